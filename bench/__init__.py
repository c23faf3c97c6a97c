"""Benchmarks: `make bench` prints measured figures (never asserted in unit tests)."""
