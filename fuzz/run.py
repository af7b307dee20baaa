"""`make fuzz`: build the seed corpus, run the intake harness, write bench/results/fuzz_intake.json.

    .venv/bin/python -m fuzz.run [--runs 1000000] [--seconds 600] [--workers N] [--timeout 10]

Stops at --runs executions or --seconds, whichever comes first. Runs --workers libFuzzer
processes side by side (default: one per CPU, at most 4); they share fuzz/corpus/found, which
libFuzzer re-reads, so what one finds the others mutate. A worker that crashes (an exception
escaping the contract check, a native crash, a hang past --timeout, memory past --rss-limit-mb)
leaves its input under fuzz/artifacts/ and is restarted with what is left of the budget, so one
run finds more than its first bug; every artifact is listed in the summary, and the exit status
is 1 when there was any.

By default the run starts from the seeds alone (fuzz/corpus/found emptied) so that its figures
are comparable between runs; --keep-corpus continues from what earlier runs found.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = REPO_ROOT / "fuzz"
HARNESS = FUZZ_DIR / "fuzz_intake.py"
DICT = FUZZ_DIR / "dicom.dict"
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")
TARGET = ("fuzz/fuzz_intake.py: what accept_instance runs before it stores (read_dataset -> "
          "validate_dataset -> check_pixel_data -> instance_from_dataset -> check_uid), then display_and_fit "
          "(the decode, display pipeline, preprocess) for accepted inputs; see fuzz/intake_check.py")
MAX_RESTARTS = 25  # per worker: a harness that crashes at once must not spin for ten minutes
_STAT = re.compile(r"^stat::(\w+):\s*(\S+)", re.M)
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)


@dataclass
class Worker:
    index: int
    runs_budget: int
    log: Path
    executions: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    cov: int = 0
    features: int = 0
    slowest_unit_s: float = 0.0
    peak_rss_mb: int = 0
    crashes: list[dict] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=int(os.environ.get("FUZZ_RUNS", 1_000_000)))
    p.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 600)))
    p.add_argument("--workers", type=int, default=int(os.environ.get("FUZZ_WORKERS", 0)),
                   help="libFuzzer processes side by side; 0 (default): one per CPU, at most 4")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it counts as a hang")
    p.add_argument("--rss-limit-mb", type=int, default=2048, help="memory of one worker before it counts as a bug")
    p.add_argument("--max-len", type=int, default=16384, help="largest input libFuzzer makes, in bytes")
    p.add_argument("--corpus", type=Path, default=FUZZ_DIR / "corpus")
    p.add_argument("--artifacts", type=Path, default=FUZZ_DIR / "artifacts")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "fuzz_intake.json")
    p.add_argument("--keep-corpus", action="store_true", help="continue from the inputs earlier runs found")
    args = p.parse_args(argv)
    if args.workers <= 0:
        args.workers = min(4, os.cpu_count() or 1)

    from fuzz import seeds

    seed_dir, found_dir = args.corpus / "seeds", args.corpus / "found"
    shutil.rmtree(seed_dir, ignore_errors=True)
    written = seeds.write(seed_dir)
    if not args.keep_corpus:
        shutil.rmtree(found_dir, ignore_errors=True)
    found_dir.mkdir(parents=True, exist_ok=True)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    print(f"fuzz: {len(written)} seeds in {seed_dir}; {args.workers} worker(s); "
          f"stop at {args.runs} executions or {args.seconds} s", flush=True)

    flags = [
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={args.max_len}",
        "-print_final_stats=1",
        "-reload=1",
    ]
    if DICT.is_file():
        flags.append(f"-dict={DICT}")

    per_worker = math.ceil(args.runs / args.workers)
    workers = [Worker(i, per_worker, args.artifacts / f"worker{i}.log") for i in range(args.workers)]
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [
        threading.Thread(target=_drive, args=(w, flags, found_dir, seed_dir, args.artifacts, deadline), daemon=True)
        for w in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    duration = time.monotonic() - started

    executions = sum(w.executions for w in workers)
    crashes = [c for w in workers for c in w.crashes]
    summary = {
        "target": TARGET,
        "command": "make fuzz",
        "stop_rule": {"runs": args.runs, "seconds": args.seconds},
        "stopped_by": "runs" if executions >= args.runs else "time",
        "executions": executions,
        "duration_s": round(duration, 1),
        "exec_per_s": round(executions / duration, 1) if duration > 0 else None,
        "workers": args.workers,
        # What the intake did with the inputs (counted by the harness; libFuzzer's own first runs
        # over the corpus included): accepted = the whole path ran, decode and display included.
        "outcomes": {k: sum(w.outcomes.get(k, 0) for w in workers)
                     for k in sorted({k for w in workers for k in w.outcomes})},
        "crashes": len(crashes),
        "crash_details": crashes,
        "restarts": sum(w.restarts for w in workers),
        "per_input_timeout_s": args.timeout,
        "rss_limit_mb": args.rss_limit_mb,
        "max_len": args.max_len,
        "seeds": len(written),
        "corpus_found": sum(1 for _ in found_dir.iterdir()),
        "python_coverage_edges": max((w.cov for w in workers), default=0),
        "python_coverage_features": max((w.features for w in workers), default=0),
        "slowest_input_s": max((w.slowest_unit_s for w in workers), default=0),
        "peak_rss_mb": max((w.peak_rss_mb for w in workers), default=0),
        "versions": _versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"fuzz: {executions} executions in {duration:.0f} s ({summary['exec_per_s']}/s), "
          f"{len(crashes)} crash(es); summary in {args.out}", flush=True)
    for c in crashes:
        print(f"  {c['kind']}: {c['artifact']}  {c['summary']}", flush=True)
    return 1 if crashes else 0


def _drive(w: Worker, flags: list[str], found_dir: Path, seed_dir: Path, artifacts: Path, deadline: float) -> None:
    """Runs one libFuzzer process after another until this worker's runs or the deadline are used up."""
    stats_file = artifacts / f"worker{w.index}.executions"
    w.log.write_text("")
    while w.executions < w.runs_budget and w.restarts <= MAX_RESTARTS:
        left_s = int(deadline - time.monotonic())
        if left_s < 1:
            break
        prefix = f"w{w.index}-"
        before = _artifacts(artifacts, prefix)
        stats_file.unlink(missing_ok=True)
        cmd = [
            sys.executable, str(HARNESS), *flags,
            f"-runs={w.runs_budget - w.executions}",
            f"-max_total_time={left_s}",
            f"-seed={1000 * w.index + w.restarts + 1}",
            f"-artifact_prefix={artifacts}/{prefix}",
            str(found_dir), str(seed_dir),
        ]
        # RUST_BACKTRACE=0: a Rust decoder's panic (caught as InputRejected) must not print 40 lines per input.
        env = dict(os.environ, FUZZ_STATS_FILE=str(stats_file), PYTHONHASHSEED="0", RUST_BACKTRACE="0")
        with open(w.log, "a") as log:
            log.write(f"\n=== {' '.join(cmd)}\n")
            log.flush()
            start = log.tell()
            # A hang the -timeout flag somehow misses must not outlive the run.
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                    env=env, timeout=left_s + 120).returncode
            except subprocess.TimeoutExpired:
                rc = -9
        text = w.log.read_bytes()[start:].decode(errors="replace")
        stats = dict(_STAT.findall(text))
        counted = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
        for outcome, n in counted.get("outcomes", {}).items():
            w.outcomes[outcome] = w.outcomes.get(outcome, 0) + n
        done = int(stats.get("number_of_executed_units", 0)) or int(counted.get("executions", 0))
        if not done:
            progress = _PROGRESS.findall(text)
            done = int(progress[-1][0]) if progress else 0
        w.executions += done
        for cov, ft in ((int(m[1]), int(m[2])) for m in _PROGRESS.findall(text)):
            w.cov, w.features = max(w.cov, cov), max(w.features, ft)
        w.slowest_unit_s = max(w.slowest_unit_s, float(stats.get("slowest_unit_time_sec", 0)))
        w.peak_rss_mb = max(w.peak_rss_mb, int(stats.get("peak_rss_mb", 0)))
        new = sorted(_artifacts(artifacts, prefix) - before)
        if rc == 0 and not new:
            break  # the budget is used up
        w.restarts += 1
        w.crashes.append({
            "kind": new[0][len(prefix):].split("-")[0] if new else f"exit {rc}",
            "artifact": str((artifacts / new[0]).relative_to(REPO_ROOT)) if new else None,
            "summary": _crash_summary(text),
            "worker": w.index,
        })


def _artifacts(folder: Path, prefix: str) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith(tuple(prefix + k for k in ARTIFACT_PREFIXES))}


def _crash_summary(text: str) -> str:
    """The most telling line of a crash: the Python exception atheris printed, else libFuzzer's verdict."""
    lines = text.splitlines()
    verdict = next((i for i, ln in enumerate(lines) if "ERROR: libFuzzer:" in ln), len(lines))
    start = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln), None)
    if start is not None:
        # The traceback's last "Type: message" line before libFuzzer's verdict is the exception.
        for line in reversed(lines[start + 1 : verdict]):
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Violation|Interrupt|Exit)\b", line):
                return line.strip()[:300]
    if verdict < len(lines):
        return lines[verdict].strip()[:300]
    return (lines[-1] if lines else "").strip()[:300]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("atheris", "pydicom", "numpy", "pillow", "python-gdcm", "pylibjpeg", "pylibjpeg-libjpeg",
                    "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    sys.exit(main())
