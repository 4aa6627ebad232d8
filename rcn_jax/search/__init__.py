"""Bilevel (DARTS-style) architecture search: the loop, the bilevel steps, leakage-free splits, export."""
