"""`make bench`: every benchmark in one run, each printing its numbers and writing bench/results/*.json."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("bench.bench_preprocess", "bench.bench_labeler", "bench.bench_pipeline", "bench.bench_inference")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== {name}", flush=True)
        try:
            importlib.import_module(name).main()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
