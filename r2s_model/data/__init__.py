"""Datasets: synthetic scene and instruction generation, checking, and loaders."""
