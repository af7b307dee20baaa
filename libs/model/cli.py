"""`cxr-report train | export | evaluate`: the model recipe (needs the `.[train]` extra: torch, tokenizers...).

    cxr-report train    --config configs/reference.yaml [--fresh] [--set stages.lm.epochs=2 ...]
    cxr-report export   --config configs/reference.yaml
    cxr-report evaluate --config configs/reference.yaml [--out models/reference/eval] [--baseline-bundle DIR]
                        [--contexts none,age_only,...] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

DEFAULT_CONFIG = Path("configs/reference.yaml")


def _overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _config(args):
    from libs.model.config import load_config

    return load_config(args.config, _overrides(args.set))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"training config (default {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stages.lm.epochs=2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _cmd_train(args) -> int:
    from libs.model.train import train

    logging.getLogger("libs.model").setLevel(logging.INFO)
    cfg = _config(args)
    state = train(cfg, resume=not args.fresh, progress=not args.quiet, restart_from=args.restart_from)
    summary = {k: state.get(k) for k in ("name", "version", "thresholds", "normalization", "done", "train_seconds")}
    print(json.dumps({"output_dir": str(cfg.out), **summary}, indent=2))
    return 0


def _cmd_export(args) -> int:
    from libs.model.export import export_bundle

    cfg = _config(args)
    parity = export_bundle(cfg, progress=not args.quiet)
    print(json.dumps({"bundle": str(cfg.path(cfg.bundle_dir)), "parity_int8_vs_fp32": parity}, indent=2))
    return 0


def _cmd_evaluate(args) -> int:
    from libs.model.evaluate import evaluate

    cfg = _config(args)
    contexts = [c.strip() for c in args.contexts.split(",") if c.strip()] if args.contexts else None
    summary = evaluate(cfg, out_dir=args.out, progress=not args.quiet, bootstrap=args.bootstrap,
                       baseline_bundle=args.baseline_bundle, contexts=contexts, limit=args.limit)
    print(json.dumps(summary, indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the report model (stages: detector, lm, align, full); resumable")
    _common(p)
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints in output_dir and start over")
    p.add_argument("--restart-from", choices=["lm", "align", "full"],
                   help="keep the finished earlier stages (e.g. the detector) and retrain from this stage on")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="ONNX export + static INT8 quantisation + parity check -> bundle_dir")
    _common(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("evaluate", help="evaluate the bundle and the baselines; JSON + markdown + plots")
    _common(p)
    p.add_argument("--out", type=Path, help="output folder (default: <bundle_dir>/eval)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    p.add_argument("--baseline-bundle", type=Path,
                   help="an earlier bundle to compare text metrics with (e.g. a copy of 1.2.1)")
    p.add_argument("--contexts", help="comma-separated context names of the robustness suite (default: all of "
                                      "libs.model.robustness.CONTEXTS)")
    p.add_argument("--limit", type=int, help="IU test reports for the robustness suite and the baseline "
                                             "comparison (default 200)")
    p.set_defaults(func=_cmd_evaluate)
