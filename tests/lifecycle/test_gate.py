"""The validation gate on held-out studies (the reference bundle on real Kermany films, and a CSV set of
DICOM and PNG files), the held-out loader's errors, the bias audit, and the `cxr-report model` CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from libs.cli import main
from libs.core.config import REPO_ROOT, Settings
from libs.lifecycle import bias, gate, registry
from libs.lifecycle.heldout import HeldOutError, load_heldout
from libs.storage.db import get_engine, upgrade_schema

REFERENCE = REPO_ROOT / "models" / "reference"


@pytest.fixture
def setup(tmp_path: Path):  # noqa: ANN201
    settings = Settings(data_dir=tmp_path / "data", database_url=None, gate_labels=["Pneumonia"],
                        gate_sensitivity_min=0.9)
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    return settings, engine, registry.register(engine, settings, REFERENCE, "t")


def test_the_gate_measures_sensitivity_and_hallucination_and_fails_what_it_cannot_measure(setup) -> None:  # noqa: ANN001
    settings, engine, model = setup
    items = load_heldout("kermany-val", limit=60)
    report = gate.validate(engine, settings, model.id, items, "kermany-val (60)", "t")
    pneumonia = report["sensitivity"]["Pneumonia"]
    assert pneumonia["assessed"] and pneumonia["sensitivity"]["total"] == sum(i.labels["Pneumonia"] for i in items)
    assert report["passed"] is (pneumonia["sensitivity"]["value"] >= 0.9 and report["hallucination_rate"]["value"] <= 0.03)
    assert Path(report["drift_reference"]).is_file()
    assert registry.get(engine, model.id).validation == report
    # The default gate is on the critical findings, which this bundle does not assess: it cannot pass.
    strict = settings.model_copy(update={"gate_labels": None})
    failed = gate.evaluate(strict, model, items[:10], "kermany-val (10)")
    assert not failed["passed"]
    assert "Pneumothorax: not assessed by this model" in failed["failures"]
    # Nothing labelled positive: not measured, so not passed.
    normals = [i for i in items if i.labels["Pneumonia"] == 0][:5]
    unmeasured = gate.evaluate(settings, model, normals, "normals")
    assert "Pneumonia: no held-out study is labelled positive, sensitivity not measured" in unmeasured["failures"]


def test_a_csv_held_out_set_of_dicom_and_png(tmp_path: Path, make_chest_dicom) -> None:  # noqa: ANN001
    from libs.data.kermany import DEFAULT_ROOT

    (tmp_path / "a.dcm").write_bytes(make_chest_dicom(real=True))
    png = sorted((DEFAULT_ROOT / "images").glob("*.png"))[0]
    shutil.copy(png, tmp_path / "b.png")
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "pleural_effusion", "Pneumonia", "age", "sex", "view", "split"])
        w.writerow(["a.dcm", "1", "", "71", "F", "PA", "test"])
        w.writerow(["b.png", "", "0", "", "M", "AP", "test"])
        w.writerow(["c.png", "", "1", "", "", "", "train"])  # training rows are not held out
    items = load_heldout(tmp_path)
    assert [i.path.name for i in items] == ["a.dcm", "b.png"]
    assert items[0].labels == {"Pleural Effusion": 1} and items[0].age == 71.0 and items[1].labels == {"Pneumonia": 0}
    from libs.lifecycle.heldout import load_images

    images = load_images(items, 224)
    assert images.shape == (2, 224, 224) and 0 <= images.min() and images.max() <= 1
    (tmp_path / "bad.csv").write_text("file,Pneumonia\nx.png,maybe\n")
    with pytest.raises(HeldOutError, match="must be 1, 0 or empty"):
        load_heldout(tmp_path / "bad.csv")
    (tmp_path / "none.csv").write_text("file,colour\nx.png,red\n")
    with pytest.raises(HeldOutError, match="no CheXpert observation column"):
        load_heldout(tmp_path / "none.csv")
    with pytest.raises(HeldOutError, match="no such file"):
        load_heldout(tmp_path / "missing")


def test_bias_audit_flags_a_subgroup_below_the_gate_and_measures_equalised_odds(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, gate_labels=["Pneumothorax"], gate_sensitivity_min=0.95)
    studies = []
    for n in range(40):  # women: every pneumothorax found; men: half missed
        sex = "F" if n % 2 else "M"
        found = sex == "F" or n % 4 == 0
        studies.append(bias.Study(calls={"Pneumothorax": (True, found), "Edema": (False, n % 10 == 0)},
                                  attributes={"sex": sex, "age": "60-69", "view": "PA", "manufacturer": None},
                                  hallucinated=n == 3))
    result = bias.audit(studies, settings, "synthetic")
    rows = {(r["attribute"], r["group"]): r for r in result["subgroups"]}
    assert rows[("sex", "F")]["gated_sensitivity"]["value"] == 1.0
    assert rows[("sex", "M")]["gated_sensitivity"]["value"] == 0.5 and "below" in rows[("sex", "M")]["flag"]
    assert result["flagged"] == ["age=60-69", "sex=M", "view=PA"]  # everyone is 60-69 on PA: 75 % overall
    gap = result["equalised_odds"]["sex"]
    assert gap["tpr_gap"] == pytest.approx(0.5) and gap["tpr_gap_ci95"][0] > 0.1
    assert result["equalised_odds"]["view"]["tpr_gap"] is None  # one group only
    text = bias.markdown(result)
    assert "| sex | M | 20 |" in text and "**Flagged:** age=60-69, sex=M, view=PA" in text
    assert bias.plot(result, tmp_path / "bias.png").stat().st_size > 1000


@pytest.fixture
def fresh_settings():  # noqa: ANN201
    from libs.core.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_model_cli_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, fresh_settings) -> None:  # noqa: ANN001
    monkeypatch.setenv("CXR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CXR_GATE_LABELS", '["Pneumonia"]')
    monkeypatch.setenv("CXR_GATE_SENSITIVITY_MIN", "0.5")
    assert main(["model", "register", str(REFERENCE)]) == 0
    model_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["model", "promote", model_id, "--to", "production", "--reason", "first"]) == 1
    assert "has not passed the validation gate" in capsys.readouterr().err
    assert main(["model", "validate", model_id, "--data", "kermany-val", "--limit", "30"]) == 0
    capsys.readouterr()
    assert main(["model", "promote", model_id, "--to", "production", "--reason", "first model"]) == 0
    assert main(["model", "list"]) == 0
    assert f"{model_id}" in capsys.readouterr().out
    assert main(["audit", "bias", "--data", "kermany-val", "--limit", "30", "--out", str(tmp_path / "audit")]) == 0
    assert "| view | AP | 30 |" in capsys.readouterr().out
    assert (tmp_path / "audit.md").is_file() and (tmp_path / "audit.png").is_file()
    assert main(["model", "history", model_id]) == 0
    history = capsys.readouterr().out
    assert "register" in history and "validate" in history and "production" in history
