"""The fuzz harness still works: its one-input function over the seed corpus, its mutator, and
(when atheris is installed, as `make fuzz` does) a short real libFuzzer run. No randomness
beyond fixed seeds; the whole file takes a few seconds."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import fuzz_intake, intake_check, mutator, seeds
from libs.core.errors import InputRejected

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return seeds.build()


def test_seed_corpus_covers_the_transfer_syntaxes(corpus):
    from pydicom import dcmread
    import io

    syntaxes = {str(dcmread(io.BytesIO(data), force=True).file_meta.TransferSyntaxUID) for data in corpus.values()
                if data[128:132] == b"DICM"}
    expected = {
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
    }
    assert expected <= syntaxes
    assert sum(len(d) for d in corpus.values()) < 200_000  # small seeds keep executions fast


def test_every_seed_passes_the_whole_intake(corpus):
    for name, data in corpus.items():
        assert fuzz_intake.one_input(data) == "accepted", name


def test_the_seeds_are_the_same_on_every_build(corpus):
    assert seeds.build() == corpus


def test_contract_violations_are_raised_not_returned():
    with pytest.raises(intake_check.ContractViolation, match="not one short line"):
        intake_check.check_reason(InputRejected("two\nlines"))
    with pytest.raises(intake_check.ContractViolation, match="repeats a patient attribute"):
        intake_check.check_reason(InputRejected(f"bad value for {seeds.PHI_MARKER}^Fuzz"))
    # a coded value quoted by _attrs.shown() may contain anything the sender wrote
    intake_check.check_reason(InputRejected(f"body part '{seeds.PHI_MARKER}' is not the chest"))
    assert fuzz_intake.one_input(b"") == "rejected"
    assert fuzz_intake.one_input(b"\x00" * 200) == "rejected"


def _flip(data: bytes, max_size: int) -> bytes:  # stands in for atheris.Mutate
    return data[:-1] + bytes([data[-1] ^ 1]) if data else b"\x00"


def test_header_mutation_finds_and_rewrites_elements(corpus):
    rng = random.Random(0)
    for name, data in corpus.items():
        if "deflated" in name:
            continue  # the dataset is compressed: only byte mutations reach it
        # Rows is found in explicit and implicit VR, little and big endian
        assert mutator.find_element(data, 0x0028, 0x0010) is not None, name
        changed = sum(mutator.header_mutation(data, rng) not in (None, data) for _ in range(50))
        assert changed > 10, name


def test_mutator_outputs_stay_within_max_size_and_run_through_the_harness(corpus):
    # Inputs the mutator makes from each seed go through the one-input function: InputRejected
    # or accepted, nothing else (a tiny, deterministic fuzz run without atheris).
    for i, (name, data) in enumerate(sorted(corpus.items())):
        for seed in range(15):
            out = mutator.mutate(data, 16384, 1000 * i + seed, _flip)
            assert len(out) <= 16384
            fuzz_intake.one_input(out)


def test_codestream_mutation_edits_jpeg_and_j2k_headers(corpus):
    rng = random.Random(1)
    for name in ("jpeg_baseline_8bit.dcm", "jpegls_lossless.dcm", "jpeg2000_lossless.dcm"):
        data = corpus[name]
        outs = {mutator.codestream_mutation(data, rng) for _ in range(20)}
        assert len(outs - {data, None}) > 5, name
    assert mutator.codestream_mutation(corpus["explicit_le_16bit_window.dcm"], rng) is None


def test_harness_runs_under_libfuzzer(tmp_path):
    pytest.importorskip("atheris")
    seed_dir = tmp_path / "seeds"
    seeds.write(seed_dir)
    (tmp_path / "found").mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "fuzz" / "fuzz_intake.py"), "-runs=300", "-seed=1", "-timeout=10",
         f"-artifact_prefix={tmp_path}/", str(tmp_path / "found"), str(seed_dir)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=dict(os.environ, RUST_BACKTRACE="0"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"Done 300 runs", proc.stderr), proc.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*"))
