#!/usr/bin/env python3
"""atheris harness for the DICOM intake path (what STOW-RS and DICOMweb pull run per file).

    .venv/bin/python fuzz/fuzz_intake.py [libFuzzer flags] CORPUS_DIR [SEED_DIR...]
    .venv/bin/python fuzz/fuzz_intake.py crash-<sha1>        # re-run one input

`make fuzz` (fuzz/run.py) is the usual way in: it builds the seed corpus, runs this with the
flags below and writes bench/results/fuzz_intake.json. The contract checked per input is in
fuzz/intake_check.py: accepted, or InputRejected with a short PHI-free reason; anything else
(another exception, a hang past -timeout, a native crash, memory past -rss_limit_mb) is a bug.

Coverage feedback comes from atheris's bytecode instrumentation of pydicom and libs/ (the
Python part of the path). The native decoders (gdcm, libjpeg, openjpeg, CharLS, Pillow) are not
instrumented: their inputs are still mutated (fuzz/mutator.py edits code-stream headers), but
blind, without coverage guidance.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

_check = None
_executions = 0
_outcomes: dict[str, int] = {}
_stats_path: str | None = os.environ.get("FUZZ_STATS_FILE")


def one_input(data: bytes) -> str:
    """The harness's one-input function: the intake contract on `data` (raises on a violation)."""
    global _check
    if _check is None:  # under `main` this was imported (instrumented) already
        from fuzz.intake_check import check, quiet

        quiet()
        _check = check
    return _check(data)


def _fuzz_one(data: bytes) -> None:
    """libFuzzer's entry: one_input, plus counts (executions, outcomes) the runner reads; written every
    64 executions, so they survive a crash."""
    global _executions
    _executions += 1
    outcome = one_input(data)
    _outcomes[outcome] = _outcomes.get(outcome, 0) + 1
    # libFuzzer ends the process with exit(), past any Python `finally`: write as we go (cheap).
    if _stats_path is not None and (_executions & 0x3F) == 0:
        _write_stats()


def _write_stats() -> None:
    tmp = f"{_stats_path}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"executions": _executions, "outcomes": _outcomes}, fh)
    os.replace(tmp, _stats_path)


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["pydicom", "libs.dicom", "libs.pipeline.intake", "fuzz"]):
        from fuzz import intake_check, mutator

    intake_check.quiet()
    global _check
    _check = intake_check.check

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutator.mutate(data, max_size, seed, atheris.Mutate)

    atheris.Setup(argv, _fuzz_one, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
