"""Reliability measurements against the real processes: `make load` and `make chaos` (docs/reliability-figures.md)."""
