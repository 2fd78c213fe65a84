"""``storyreasoning check``: parse a model output and say whether it is well-structured."""
