"""Helpers for tests/model (a plain module, imported by the test files: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path

from libs.core.config import REPO_ROOT

KERMANY_ROOT = Path("/work/shared/data/kermany_pneumonia_224")
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"


def tiny_config(tmp: Path, **overrides):
    """configs/tiny.yaml with every output under `tmp` and the MIMIC-layout fixture written there."""
    from libs.model.config import load_config
    from libs.model.fixtures import write_mimic_fixture

    fixture = write_mimic_fixture(tmp / "mimic", n=48, size=64)
    values = {"output_dir": str(tmp / "run"), "bundle_dir": str(tmp / "bundle"), "data.paired.root": str(fixture)}
    values.update(overrides)
    return load_config(TINY_CONFIG, values)
