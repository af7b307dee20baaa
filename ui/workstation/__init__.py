"""The radiologists' review workstation: worklist, study page, sign / edit / reject (routes.py)."""

from pathlib import Path

from ui.workstation.routes import router

STATIC = str(Path(__file__).parent / "static")

__all__ = ["STATIC", "router"]
