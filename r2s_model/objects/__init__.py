"""Scene understanding: a pretrained encoder labels superpoints and groups them into objects."""
