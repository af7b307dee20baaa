"""Radiologist feedback: recording it against a drafted report (record.py) and what it says about
the model over a rolling window (quality.py)."""
