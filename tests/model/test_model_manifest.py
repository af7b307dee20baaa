"""Manifest rules added with the decoder (libs.bundle.manifest): no torch needed."""

from __future__ import annotations

import json

import pytest

from libs.bundle.manifest import load_manifest
from libs.bundle.testing import build_random_bundle
from libs.core.errors import BundleUnavailable


def _edit(bundle, **changes):
    path = bundle / "manifest.json"
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        node = doc
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(json.dumps(doc))


def test_decoder_needs_a_tokenizer(tmp_path):
    bundle = build_random_bundle(tmp_path / "b", image_size=32)
    (bundle / "decoder.onnx").write_bytes(b"x")
    _edit(bundle, **{"files.decoder": "decoder.onnx"})
    with pytest.raises(BundleUnavailable, match="files.decoder needs files.tokenizer"):
        load_manifest(bundle)


def test_generation_needs_a_decoder(tmp_path):
    bundle = build_random_bundle(tmp_path / "b", image_size=32)
    _edit(bundle, generation={"max_new_tokens": 10})
    with pytest.raises(BundleUnavailable, match="generation is set but files.decoder is not"):
        load_manifest(bundle)


def test_unknown_prompt_format_is_refused(tmp_path):
    bundle = build_random_bundle(tmp_path / "b", image_size=32)
    for name in ("decoder.onnx", "tokenizer.json"):
        (bundle / name).write_bytes(b"x")
    _edit(bundle, **{"files.decoder": "decoder.onnx", "files.tokenizer": "tokenizer.json"},
          generation={"prompt_format": "other-v9"})
    with pytest.raises(BundleUnavailable, match="prompt_format"):
        load_manifest(bundle)
