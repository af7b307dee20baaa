"""`cxr-report`: the command line.

  cxr-report run PATH... [--age N --sex M|F --indication TEXT ...]   one study through the pipeline
  cxr-report db upgrade                                              apply database migrations
  cxr-report label FILE|-  /  label-eval                             the report labeler

Errors print one line (no traceback; --debug shows it) and exit non-zero:
2 = the input was rejected, 3 = no usable model bundle, 1 = anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_REJECTED = 2
EXIT_NO_BUNDLE = 3


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline on one study (DICOM files or folders) in this process")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--age", type=int)
    p.add_argument("--sex", choices=["M", "F", "O", "U"])
    p.add_argument("--indication")
    p.add_argument("--prior", action="append", default=[], metavar="YYYY-MM-DD", help="prior study date")
    p.add_argument("--template", default="standard")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    p.add_argument("--stat", action="store_true", help="STAT priority")
    p.add_argument("--bundle", type=Path, help="model bundle folder (default: CXR_BUNDLE_PATH or models/reference)")
    p.add_argument("--data-dir", type=Path, help="where studies and the SQLite file go (default: CXR_DATA_DIR or ./var)")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from libs.core.config import Settings
    from libs.core.errors import BundleUnavailable, InputRejected
    from libs.domain.context import ClinicalContext
    from libs.domain.request import ReportRequest
    from libs.pipeline.context import PipelineContext
    from libs.pipeline.embedded import run_study

    # One study at a time: a batcher would only add its wait.
    overrides = {"queue_backend": "inprocess", "batching": False}
    if args.bundle:
        overrides["bundle_path"] = args.bundle
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = Settings(**overrides)
    try:
        request = ReportRequest(
            clinical_context=ClinicalContext(age=args.age, sex=args.sex, indication=args.indication,
                                             prior_studies=args.prior),
            report_template=args.template,
            confidence_threshold=args.confidence_threshold,
            priority="stat" if args.stat else "routine",
        )
    except ValueError as exc:
        raise InputRejected(_first_error(exc)) from None
    from libs.reporting.render import check_template

    check_template(request.report_template)
    ctx = PipelineContext.from_settings(settings)
    try:
        result = run_study(ctx, args.paths, request)
    except BundleUnavailable as exc:
        raise BundleUnavailable(
            f"{exc.reason}; no report can be drafted until one is installed "
            "(see README, 'Model bundle') or given with --bundle PATH"
        ) from None
    if result.report is None:
        raise InputRejected(result.error or f"job ended in state {result.state.value}")
    print(json.dumps({"job_id": result.job_id, "status": result.state.value,
                      **result.report.model_dump(mode="json")}, indent=2))
    return 0


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    return str(exc)


def _add_db(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=_cmd_db)


def _cmd_db(args: argparse.Namespace) -> int:
    from libs.core.config import get_settings
    from libs.storage.db import get_engine, upgrade_schema

    settings = get_settings()
    upgrade_schema(get_engine(settings.sqlalchemy_url))
    print(f"database at {settings.sqlalchemy_url.split('@')[-1]} is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_db(sub)
    __import__("libs.model.cli", fromlist=["register"]).register(sub)  # train / export / evaluate
    __import__("libs.auth.cli", fromlist=["register"]).register(sub)  # apikey / audit
    __import__("libs.pipeline.cli", fromlist=["register"]).register(sub)  # jobs (dead letters, redrive)
    __import__("libs.automation.cli", fromlist=["register"]).register(sub)  # automation status/pause/resume
    __import__("libs.lifecycle.cli", fromlist=["register"]).register(sub)  # model registry, trial, drift
    try:
        from libs.labeler.cli import register as register_labeler
    except ImportError:  # the labeler lands in its own change
        pass
    else:
        register_labeler(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CXR_LOG_LEVEL", "WARNING"), format="%(levelname)s %(message)s")
    from libs.core.errors import BundleUnavailable, CxrError, InputRejected

    try:
        return int(args.func(args) or 0)
    except CxrError as exc:
        if args.debug:
            raise
        code = EXIT_NO_BUNDLE if isinstance(exc, BundleUnavailable) else EXIT_REJECTED if isinstance(exc, InputRejected) else 1
        print(f"cxr-report: {exc.reason}", file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - one line for users; --debug for developers
        if args.debug:
            raise
        print(f"cxr-report: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
