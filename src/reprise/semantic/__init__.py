"""Semantic caching: scoped vector lookups after an exact miss, guarded against false hits."""
