"""Report labeler throughput on the IU/Open-i corpus (3,955 reports), one process pinned to one core.

The corpus is read from the torchxrayvision wheel (fetched with pip into var/cache/iu/ when missing,
see libs/labeler/iu_reports.py) and kept in memory; only `label_report` is timed. Each repetition
labels every report once; the median repetition is the reported rate. The agreement with the MeSH
labels (micro/macro F1) is recorded alongside, so a speed-up that costs accuracy shows.

Goal: >= 1,000 reports/s on one core.

  python -m bench.bench_labeler [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from libs.labeler import label_report
from libs.labeler.evaluation import evaluate_against_mesh
from libs.labeler.iu_reports import load_iu_reports

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "labeler.json"
GOAL_REPORTS_PER_S = 1000.0


def _pin_to_one_core() -> tuple[str, set[int] | None]:
    """Run on a single CPU so the number means "one core"; returns the old affinity to restore."""
    if hasattr(os, "sched_setaffinity"):
        before = set(os.sched_getaffinity(0))
        cpu = min(before)
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}", before
    return "not pinned (no sched_setaffinity on this platform)", None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv if argv is not None else [])

    reports = load_iu_reports()
    texts = [r.text for r in reports]
    pinning, affinity_before = _pin_to_one_core()
    try:
        for text in texts[:200]:  # warm-up: regex compilation and caches
            label_report(text)
        rates = []
        for _ in range(args.reps):
            start = time.perf_counter()
            for text in texts:
                label_report(text)
            rates.append(len(texts) / (time.perf_counter() - start))
    finally:  # `make bench` runs the other benchmarks in this same process
        if affinity_before is not None:
            os.sched_setaffinity(0, affinity_before)
    median = statistics.median(rates)

    evaluation = evaluate_against_mesh(reports)
    result = {
        "benchmark": "labeler",
        "reports": len(texts),
        "mean_chars_per_report": round(sum(map(len, texts)) / len(texts), 1),
        "reps": args.reps,
        "reports_per_s_median": round(median, 1),
        "reports_per_s_min": round(min(rates), 1),
        "reports_per_s_max": round(max(rates), 1),
        "ms_per_report_median": round(1000.0 / median, 3),
        "goal_reports_per_s": GOAL_REPORTS_PER_S,
        "meets_goal": median >= GOAL_REPORTS_PER_S,
        "cpu": pinning,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "mesh_agreement": {
            "reports": evaluation.scores["n"],
            "micro_f1": round(evaluation.scores["micro"]["f1"], 4),
            "macro_f1": round(evaluation.scores["macro"]["f1"], 4),
            "micro_f1_uncertain_as_negative": round(evaluation.strict_scores["micro"]["f1"], 4),
            "macro_f1_uncertain_as_negative": round(evaluation.strict_scores["macro"]["f1"], 4),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"labeler: {median:,.0f} reports/s median over {args.reps} passes of {len(texts)} IU reports "
          f"({1000.0 / median:.3f} ms/report, {pinning}); goal >= {GOAL_REPORTS_PER_S:,.0f}: "
          f"{'met' if result['meets_goal'] else 'NOT met'}")
    print(f"MeSH agreement on {evaluation.scores['n']} reports: micro-F1 {result['mesh_agreement']['micro_f1']:.3f}, "
          f"macro-F1 {result['mesh_agreement']['macro_f1']:.3f}")
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
