"""QA-flag sensitivity and flagged fraction on constructed (reference report, model output) pairs.

The real measurement (evaluation split, reference model) waits for the trained model; these pin the
arithmetic and the definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.qa.evaluation import EvalCase, evaluate_qa_flags, main, reference_critical, wilson
from tests.reporting.helpers import model_output


def test_reference_critical_reads_the_radiologists_report() -> None:
    assert reference_critical("Small right pneumothorax. No effusion.") == {"Pneumothorax"}
    assert reference_critical("Possible left rib fracture.") == set()
    assert reference_critical("Possible left rib fracture.", count_uncertain=True) == {"Fracture"}
    assert reference_critical("No acute cardiopulmonary abnormality.") == set()


def test_sensitivity_and_flagged_fraction() -> None:
    cases = [
        # critical in the reference, head sees it -> flagged
        EvalCase("Large right pneumothorax.", model_output({"Pneumothorax": 0.95})),
        # critical in the reference, head misses it, nothing else -> NOT flagged (a miss)
        EvalCase("Small left pleural effusion.", model_output({})),
        # critical in the reference, head sees something else critical -> flagged, but not for the effusion
        EvalCase("Moderate pleural effusion.", model_output({"Fracture": 0.9})),
        # normal reference, normal output -> not flagged
        EvalCase("No acute cardiopulmonary abnormality.", model_output({})),
        # normal reference, non-critical finding under the confidence threshold -> flagged (low confidence)
        EvalCase("Heart size is normal.", model_output({"Edema": 0.55})),
    ]
    stats = evaluate_qa_flags(cases, confidence_threshold=0.6)
    assert (stats.studies, stats.flagged) == (5, 3)
    assert stats.flagged_fraction == pytest.approx(0.6)
    assert (stats.critical_studies, stats.critical_flagged) == (3, 2)
    assert stats.sensitivity == pytest.approx(2 / 3)
    assert stats.missed == [1]
    effusion = stats.per_label["Pleural Effusion"]
    assert (effusion.studies, effusion.flagged, effusion.flagged_for_label) == (2, 1, 0)
    assert stats.per_label["Pneumothorax"].sensitivity == 1.0
    assert stats.per_label["Lung Lesion"].sensitivity is None
    low, high = stats.sensitivity_ci95
    assert low < 2 / 3 < high


def test_wilson_interval() -> None:
    assert wilson(0, 0) is None
    low, high = wilson(98, 100)
    assert low == pytest.approx(0.9300, abs=1e-3) and high == pytest.approx(0.9945, abs=1e-3)
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_cli_reads_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"reference": "Right pneumothorax.", "model_output": model_output({"Pneumothorax": 0.9}).model_dump(mode="json"),
         "image": {"width": 1000, "view": "PA"}},
        {"reference": "Normal chest.", "model_output": model_output({}).model_dump(mode="json")},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main([str(pairs), "--template", "concise"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["studies"], out["critical_studies"], out["sensitivity"], out["flagged_fraction"]) == (2, 1, 1.0, 0.5)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"reference": "x"}\n')
    assert main([str(bad)]) == 2
