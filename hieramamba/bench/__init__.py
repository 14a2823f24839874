"""Benchmarks: `hieramamba bench scaling` (time and peak memory vs sequence length)."""
