"""Each instance is decoded once: intake checks that its pixel data is complete, ingestion decodes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import Decoder

from libs.core.errors import InputRejected
from libs.domain.job import JobState
from libs.domain.request import ReportRequest
from libs.pipeline.dispatch import InProcessDispatcher
from libs.pipeline.embedded import store_files
from libs.pipeline.messages import Step, StepMessage
from libs.pipeline.steps import run_step
from libs.storage import crud
from libs.storage.db import session_scope


@pytest.fixture
def decodes(monkeypatch) -> list[str]:  # noqa: ANN001
    """Every pixel decode from here on, by decoder: pydicom's plugins, the reduced JPEG 2000 one, pixel_array."""
    from libs.dicom import j2k_reduce

    calls: list[str] = []

    def counting(name, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(name)
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Decoder, "as_array", counting("pydicom", Decoder.as_array))
    monkeypatch.setattr(Decoder, "iter_array", counting("pydicom-iter", Decoder.iter_array))
    monkeypatch.setattr(j2k_reduce, "_pillow_decode", counting("reduced-j2k", j2k_reduce._pillow_decode))
    monkeypatch.setattr(Dataset, "pixel_array", property(counting("pixel_array", Dataset.pixel_array.fget)))
    return calls


def _job(ctx, study: str) -> str:  # noqa: ANN001
    with session_scope(ctx.engine) as s:
        job, _ = crud.create_job(s, study, ReportRequest())
        return job.id


def test_intake_does_not_decode_and_ingestion_decodes_once(ctx, chest_pa: Path, decodes) -> None:  # noqa: ANN001
    study = store_files(ctx, [chest_pa])
    assert decodes == [], "intake decoded the pixel data"
    job_id = _job(ctx, study)
    assert run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, InProcessDispatcher()) is JobState.PREPROCESSED
    # The sample is the 1955x1841 JPEG 2000 CR and the test bundle takes 64 pixels: one reduced decode.
    assert decodes == ["reduced-j2k"]
    with session_scope(ctx.engine) as s:
        geometry = crud.get_job(s, job_id).geometry
    assert (geometry["source_rows"], geometry["source_cols"], geometry["size"]) == (1955, 1841, 64)


def test_uncompressed_instance_is_decoded_once(ctx, tmp_path: Path, decodes) -> None:  # noqa: ANN001
    import importlib.util

    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pydicom-data is not installed")
    uncr = Path(next(iter(spec.submodule_search_locations))) / "data" / "RG1_UNCR.dcm"
    job_id = _job(ctx, store_files(ctx, [uncr]))
    assert run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, InProcessDispatcher()) is JobState.PREPROCESSED
    assert decodes == ["pydicom"]


def test_corrupt_coded_data_is_accepted_then_fails_the_job_with_the_decoders_reason(ctx, chest_pa, tmp_path) -> None:  # noqa: ANN001
    import pydicom

    ds = pydicom.dcmread(chest_pa)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[400:-2] = b"\xff" * (len(frame) - 402)  # headers and end marker intact, coded data destroyed
    ds.PixelData = encapsulate([bytes(frame)])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    job_id = _job(ctx, store_files(ctx, [broken]))  # intake: complete, so stored
    d = InProcessDispatcher()
    assert run_step(Step.INGESTION, StepMessage(job_id=job_id), ctx, d) is JobState.FAILED
    with session_scope(ctx.engine) as s:
        error = crud.get_job(s, job_id).error
    assert error.startswith("pixel data cannot be decoded: "), error
    assert "\n" not in error and not d.pending


def test_intake_still_rejects_a_cut_code_stream(ctx, chest_pa, tmp_path) -> None:  # noqa: ANN001
    import pydicom

    ds = pydicom.dcmread(chest_pa)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])
    cut = tmp_path / "cut.dcm"
    ds.save_as(cut)
    with pytest.raises(InputRejected, match="pixel data is truncated: the compressed frame .* has no end-of-image marker"):
        store_files(ctx, [cut])
