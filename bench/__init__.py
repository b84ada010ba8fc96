"""Benchmarks: `make bench` measures, and writes BENCHMARKS.md."""
