"""Deterministic splits: by id (reports) or by group (images of one patient stay together).

Split files are small JSON documents holding ids only ({"seed": 0, "fractions": ..., "train": [...], ...})
so they can be committed without any data.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

SPLITS = ("train", "val", "test")


def split_ids(ids: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[str, list[str]]:
    """Shuffle `ids` with `seed` and cut them into len(fractions) parts named train/val/test.

    Sizes are rounded so that they add up to len(ids); ids keep their input order inside a part.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must add up to 1, got {list(fractions)}")
    order = list(ids)
    if len(set(order)) != len(order):
        raise ValueError("ids must be unique")
    shuffled = order[:]
    random.Random(seed).shuffle(shuffled)
    cuts, total = [], 0.0
    for f in fractions[:-1]:
        total += f
        cuts.append(round(total * len(shuffled)))
    bounds = [0, *cuts, len(shuffled)]
    position = {i: n for n, i in enumerate(order)}
    parts = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
        parts[name] = sorted(shuffled[lo:hi], key=position.__getitem__)
    return parts


def split_groups(
    items: Iterable[tuple[str, str, str]], fractions: Sequence[float], seed: int = 0
) -> dict[str, list[str]]:
    """Grouped, stratified split of (item_id, group, stratum) triples.

    Every group goes wholly to one part. Within each stratum (e.g. the label), groups are shuffled with
    `seed` and assigned greedily so each part gets about its fraction of the stratum's *items*. A group
    whose items span strata is assigned with the stratum of its first item.
    """
    items = list(items)
    group_items: dict[str, list[str]] = defaultdict(list)
    group_stratum: dict[str, str] = {}
    for item_id, group, stratum in items:
        group_items[group].append(item_id)
        group_stratum.setdefault(group, stratum)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, stratum in group_stratum.items():
        by_stratum[stratum].append(group)
    names = SPLITS[: len(fractions)]
    assigned: dict[str, str] = {}
    rng = random.Random(seed)
    for stratum in sorted(by_stratum):
        groups = sorted(by_stratum[stratum])
        rng.shuffle(groups)
        total = sum(len(group_items[g]) for g in groups)
        filled = {name: 0 for name in names}
        for g in groups:
            # The part furthest below its target share takes the next group.
            name = max(names, key=lambda n: fractions[names.index(n)] * total - filled[n])
            assigned[g] = name
            filled[name] += len(group_items[g])
    parts: dict[str, list[str]] = {name: [] for name in names}
    for item_id, group, _ in items:
        parts[assigned[group]].append(item_id)
    return parts


def save_split(path: Path, parts: dict[str, list[str]], **meta) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**meta, **{name: list(ids) for name, ids in parts.items()}}
    path.write_text(json.dumps(doc, indent=0) + "\n", encoding="utf-8")
    return path


def load_split(path: Path) -> dict[str, str]:
    """id -> split name, from a split file written by save_split."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for name in SPLITS:
        for item in doc.get(name, []):
            out[item] = name
    return out
