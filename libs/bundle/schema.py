"""Writes the manifest's JSON Schema next to this module, for hospitals writing their own manifests.

    python -m libs.bundle.schema

tests/bundle checks that the committed manifest.schema.json matches the Manifest model.
"""

from __future__ import annotations

import json
from pathlib import Path

from libs.bundle.manifest import Manifest

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


def render_schema() -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **Manifest.model_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(render_schema(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_schema())
