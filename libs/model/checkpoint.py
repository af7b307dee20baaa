"""Weights as fp16 safetensors shards (each <= 16 MiB) + an index, and resumable training state.

    <dir>/model.safetensors.index.json   {"metadata": {...}, "weight_map": {tensor name: shard file}}
    <dir>/model-00001-of-0000K.safetensors ...
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MAX_SHARD_BYTES = 16 * 1024 * 1024
INDEX_FILE = "model.safetensors.index.json"


def save_sharded(state: dict[str, torch.Tensor], out_dir: Path, max_bytes: int = MAX_SHARD_BYTES,
                 metadata: dict[str, str] | None = None) -> list[Path]:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("model-*.safetensors"):
        old.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        t = tensor.detach().to("cpu")
        t = t.half() if t.is_floating_point() else t
        t = t.contiguous()
        nbytes = t.numel() * t.element_size()
        if nbytes > max_bytes:
            raise ValueError(f"tensor {name} ({nbytes} bytes) exceeds the {max_bytes}-byte shard limit")
        if shards[-1] and size + nbytes > max_bytes - 64 * 1024:  # leave room for the header
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    paths, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        path = out_dir / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        paths.append(path)
        weight_map.update({name: path.name for name in shard})
    (out_dir / INDEX_FILE).write_text(json.dumps({"metadata": metadata or {}, "weight_map": weight_map}, indent=1))
    return paths


def load_sharded(in_dir: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    in_dir = Path(in_dir)
    index = json.loads((in_dir / INDEX_FILE).read_text())
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        for name, t in load_file(str(in_dir / shard)).items():
            state[name] = t.to(dtype) if t.is_floating_point() else t
    return state
