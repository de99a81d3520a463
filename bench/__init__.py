"""Benchmarks for voltorch, run with `make bench` (`python -m bench`); separate from the tests."""
