"""`cxr-report apikey ...` and `cxr-report audit verify`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    return None
