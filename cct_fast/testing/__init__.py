"""Helpers for the tests and benchmarks: the official PyTorch architecture
(:mod:`.official_torch`) and a PyTorch reference of the official text models
(:mod:`.official_text`); their comparisons use :func:`cct_fast.base.compare.relative_error`.
Not imported by ``import cct_fast``."""
