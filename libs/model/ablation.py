"""`python -m libs.model.ablation RUN_DIR [RUN_DIR ...]`: the detector of each training run on its own
validation split, side by side (what each recipe change did; MODEL_CARD.md "Head: what each change did").

Per run: AUROC with a patient-bootstrap 95 % interval, the operating point of the run's threshold rule,
the calibration error, and the specificity on each normal file-name series separately (a model that
learnt one series' look as "normal" calls the other series' normal films pneumonia: the failure the
withheld test split showed for bundle 1.2.1, specificity 0.825).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run_summary(run_dir: Path, bootstrap: int = 500) -> dict:
    from libs.data.kermany import DEFAULT_ROOT, PNEUMONIA, load_kermany, series_of
    from libs.model.calibration import auroc, bootstrap_ci, operating_point, reliability
    from libs.model.config import TrainConfig

    state = json.loads((run_dir / "state.json").read_text(encoding="utf-8")) if (run_dir / "state.json").is_file() \
        else _state_from_checkpoint(run_dir)
    cfg = TrainConfig.model_validate(state["config"])
    records = [r for r in load_kermany(cfg.path(cfg.data.images.root) or DEFAULT_ROOT, cfg.path(cfg.data.images.split_file))
               if r.split == "val"]
    scores = state["val_scores"]["Pneumonia"]
    y = np.asarray([r.labels[PNEUMONIA] for r in records])
    p = np.empty(len(records))
    p[y == 1], p[y == 0] = scores["pos"], scores["neg"]
    thr = state["thresholds"]["Pneumonia"]
    groups = np.asarray([r.group for r in records])
    series = np.asarray(series_of(records))
    out = {
        "run": run_dir.name,
        "split": cfg.data.images.split_file,
        "augment": cfg.augment, "input_stretch": cfg.input_stretch, "epochs": cfg.stages.detector.epochs,
        "rule": cfg.thresholds.rules.get("Pneumonia"),
        "n": int(len(y)), "positives": int(y.sum()),
        "auroc": auroc(y, p),
        "auroc_ci95": bootstrap_ci(lambda i: auroc(y[i], p[i]), len(y), bootstrap, groups=groups),
        **{k: v for k, v in operating_point(y, p, thr).items() if k in ("threshold", "sensitivity", "specificity")},
        "ece": reliability(y, p)["ece"],
        "specificity_by_series": {s: float((p[(series == s) & (y == 0)] < thr).mean())
                                  for s in sorted(set(series[y == 0]))},
        "train_seconds": state.get("train_seconds"),
    }
    return out


def _state_from_checkpoint(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["state"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    rows = [run_summary(r, args.bootstrap) for r in args.runs]
    print("| run | augment | stretch | epochs | AUROC [95 % CI] | thr | sens | spec | ECE | spec by normal series |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["auroc_ci95"]
        series = ", ".join(f"{k} {v:.3f}" for k, v in r["specificity_by_series"].items())
        print(f"| {r['run']} | {r['augment']} | {r['input_stretch']} | {r['epochs']} | {r['auroc']:.4f} [{lo:.4f}, {hi:.4f}] "
              f"| {r['threshold']:.3f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['ece']:.4f} | {series} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
