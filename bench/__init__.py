"""Benchmarks of Reprise against a trivial ASGI app and LiteLLM; run ``python bench/run.py``."""
