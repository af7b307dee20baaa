"""Serving-time machinery around a bundle: the dynamic batcher."""
