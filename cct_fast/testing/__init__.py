"""Helpers for the tests and benchmarks: the official PyTorch architecture
(:mod:`.official_torch`) and the comparisons every parity test makes (:mod:`.compare`). Not
imported by ``import cct_fast``."""
