"""`cxr-report jobs ...`: dead letters and re-driving them (filled in with the reconciler)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None
