"""Benchmarks: run as scripts (`uv run python bench/serving.py`); they print, not assert."""
