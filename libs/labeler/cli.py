"""Command-line entry points of the labeler: `label FILE|-` and `label-eval [--reports PATH]`.

`register(subparsers)` adds both to a parent argparse parser (the `cxr-report` CLI does this); each
sets `func`, which takes the parsed arguments and returns the exit status. For a standalone run:

    python -m libs.labeler.cli label report.txt
    echo "Small left pleural effusion." | python -m libs.labeler.cli label -
    python -m libs.labeler.cli label-eval [--reports torchxrayvision-1.5.7-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    label = subparsers.add_parser(
        "label", help="label a report (findings + impression) with the 14 CheXpert observations; prints JSON"
    )
    label.add_argument("file", help="text file with the report, or - for standard input")
    label.add_argument("--compact", action="store_true", help="one line of JSON instead of indented")
    label.set_defaults(func=_cmd_label)

    evaluate = subparsers.add_parser(
        "label-eval", help="agreement of the labeler with the IU/Open-i MeSH labels (precision/recall/F1 table)"
    )
    evaluate.add_argument(
        "--reports", type=Path, default=None,
        help="torchxrayvision wheel or NLMCXR_reports.tgz (default: CXR_IU_REPORTS / CXR_IU_WHEEL, else "
             "var/cache/iu/, downloaded with pip if missing)",
    )
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON instead of the table")
    evaluate.set_defaults(func=_cmd_label_eval)


def _cmd_label(args: argparse.Namespace) -> int:
    from libs.labeler.labeler import label_report

    if args.file == "-":
        text = sys.stdin.read()
    else:
        text = Path(args.file).read_text(encoding="utf-8")
    result = label_report(text)
    print(json.dumps(result.to_dict(), indent=None if args.compact else 2))
    return 0


def _cmd_label_eval(args: argparse.Namespace) -> int:
    from libs.labeler.evaluation import evaluate_against_mesh, format_table

    evaluation = evaluate_against_mesh(source=args.reports)
    if args.json:
        scores = {"uncertain_as_positive": evaluation.scores, "uncertain_as_negative": evaluation.strict_scores}
        print(json.dumps(scores, indent=2))
    else:
        print(format_table(evaluation))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m libs.labeler.cli", description="CheXpert report labeler")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
