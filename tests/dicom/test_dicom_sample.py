"""The study `make demo` runs on must pass every rule, without pydicom-data installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from libs.dicom import load_for_model, read_dataset, validate_dataset
from libs.domain.study import View

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "chest_pa" / "RG1_J2KI.dcm"


def test_demo_sample_is_an_accepted_chest_pa():
    validate_dataset(read_dataset(SAMPLE), decode=True)
    instance, pre = load_for_model(SAMPLE, size=256)
    assert (instance.modality, instance.view) == ("CR", View.PA)
    assert (instance.rows, instance.columns) == (1955, 1841)
    assert pre.array.shape == (256, 256) and pre.array.dtype == np.float32
    assert 0.2 < float(pre.array.mean()) < 0.9
