"""Prometheus metrics and the inference runtime's status board (what /readyz shows about workers)."""
