"""Benchmarks and the GPU check: `python -m bench.<name>` from the repository root."""
