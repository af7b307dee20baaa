"""`cxr-report run`: the embedded pipeline from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.cli import EXIT_NO_BUNDLE, EXIT_REJECTED, main


def test_run_prints_the_report(tmp_path: Path, small_bundle: Path, chest_pa: Path, capsys) -> None:  # noqa: ANN001
    code = main(["run", str(chest_pa), "--age", "67", "--sex", "M", "--indication", "cough",
                 "--bundle", str(small_bundle), "--data-dir", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["status"] == "reviewed"
    assert report["model_version"] == "0.0.0-test"
    assert report["report_id"].startswith("rpt-")
    assert report["recommendations"].endswith("signed by a radiologist.")
    for finding in report["findings"]:
        assert set(finding) >= {"finding", "confidence", "severity", "bounding_box", "is_critical"}


def test_missing_bundle_says_so(tmp_path: Path, chest_pa: Path, capsys) -> None:  # noqa: ANN001
    code = main(["run", str(chest_pa), "--bundle", str(tmp_path / "none"), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_NO_BUNDLE
    assert "no model bundle installed" in err.lower()
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.txt", b"this is not a DICOM file", "not a DICOM file"),
    ],
)
def test_rejected_input_one_line_no_traceback(tmp_path: Path, small_bundle: Path, name: str, content: bytes,
                                              reason: str) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "libs.cli", "run", str(bad), "--bundle", str(small_bundle),
         "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == EXIT_REJECTED
    assert reason in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_extremity_radiograph_is_rejected(tmp_path: Path, small_bundle: Path, capsys) -> None:  # noqa: ANN001
    import data_store

    rg3 = Path(data_store.__file__).parent / "data" / "RG3_UNCR.dcm"
    code = main(["run", str(rg3), "--bundle", str(small_bundle), "--data-dir", str(tmp_path)])
    assert code == EXIT_REJECTED
    assert "EXTREMITY" in capsys.readouterr().err
