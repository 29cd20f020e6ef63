"""Benchmarks: run them with `python bench/run.py` (see README)."""
