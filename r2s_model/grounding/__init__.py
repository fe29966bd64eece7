"""Object-level grounding: proposals as tokens, [REL]/[SEG] states choosing among them."""
