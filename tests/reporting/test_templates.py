"""Template files: they load, they are checked, and an unknown one is rejected like the gateway expects."""

from __future__ import annotations

import pytest

from libs.core.errors import InputRejected
from libs.domain.labels import ABNORMAL_LABELS
from libs.reporting.render import TEMPLATES, check_template
from libs.reporting.templating import ReportTemplate, available_templates, load_template


def test_the_shipped_templates_load() -> None:
    assert {"standard", "concise", "structured"} <= set(available_templates())
    assert TEMPLATES == available_templates()
    for name in available_templates():
        template = load_template(name)
        assert template.name == name
        assert template.findings.not_assessed.startswith("Not assessed")


def test_unknown_template_is_input_rejected_with_the_available_ones() -> None:
    with pytest.raises(InputRejected) as err:
        check_template("fancy")
    assert "unknown report_template 'fancy'" in err.value.reason
    assert "standard" in err.value.reason and "structured" in err.value.reason
    assert check_template("concise") == "concise"


def test_path_like_names_never_reach_the_file_system() -> None:
    for name in ("../standard", "standard.yaml", "STANDARD", ""):
        with pytest.raises(InputRejected):
            check_template(name)


def _base(**findings) -> dict:  # noqa: ANN003
    return {"name": "t", "title": "T", "description": "d", "show_confidence": True,
            "findings": {"layout": "sentences", **findings}, "document": "{findings}"}


def test_a_template_is_checked_when_it_is_loaded() -> None:
    ReportTemplate.model_validate(_base())
    with pytest.raises(ValueError, match="must start with 'Not assessed'"):
        ReportTemplate.model_validate(_base(not_assessed="Unassessed: {labels}."))
    with pytest.raises(ValueError, match="bad placeholder"):
        ReportTemplate.model_validate(_base(positive="{finding} ({probability})."))
    with pytest.raises(ValueError, match="plain name"):
        ReportTemplate.model_validate(_base(positive="{finding.__class__}."))
    regions = [{"heading": "All but fracture", "labels": [l for l in ABNORMAL_LABELS if l != "Fracture"]}]
    with pytest.raises(ValueError, match="missing \\['Fracture'\\]"):
        ReportTemplate.model_validate(_base(layout="regions", regions=regions))
    with pytest.raises(ValueError, match="extra"):
        ReportTemplate.model_validate({**_base(), "colour": "blue"})
