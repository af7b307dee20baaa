"""Images through the platform's own serving path, for `cxr-report evaluate`.

Each image file is wrapped as a DX DICOM (libs.dicom.wrap, no window: the display pipeline estimates
one, as for a converter that writes none), then goes through exactly what a study goes through:
intake's validation (read, validate, pixel data complete without a decode, instance), ingestion's load_for_model (display
pipeline + square fit), the bundle runner (batched as the inference service batches), boxes mapped back
to source pixels with the resize geometry, render_report and QA's review_report. No DB or queue:
those move bytes and ids and do not change a number, which tests/model/test_serving_eval.py checks
by comparing with the embedded pipeline (`cxr-report run`'s) on the same files.

The head is run once per image; the report decoder then runs once per context (libs.model.robustness
needs the same head outputs under several contexts), with identical prompts decoded once.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.domain.context import ClinicalContext
from libs.domain.model_output import ModelOutput
from libs.domain.report import Report
from libs.domain.study import View
from libs.qa.laterality import ImageInfo


@dataclass
class HeadResult:
    """One image's head output through the serving path (boxes in source-image pixels)."""

    name: str  # the image file's name (no identifiers: Kermany / test names only)
    output: ModelOutput
    image: ImageInfo | None  # None: no image (IU prompts), so no box side
    rows: int  # source-image rows (ImageInfo has the columns)


@dataclass
class ServedReport:
    head: HeadResult
    context: ClinicalContext | None
    raw_text: str | None  # what the decoder wrote, before grounding
    report: Report  # rendered and reviewed, as the API returns it


def ingest_image(path: str | Path, work_dir: Path, size: int):  # noqa: ANN201 - (Instance, PreprocessedImage)
    """The PNG/JPEG at `path` as a stored DX instance, read back by ingestion."""
    from libs.dicom import instance_from_dataset, read_dataset, validate_dataset
    from libs.dicom.load import load_for_model
    from libs.dicom.pixels import check_pixel_data
    from libs.dicom.wrap import write_wrapped

    dcm = write_wrapped(path, work_dir / f"{Path(path).stem}.dcm")
    ds = read_dataset(dcm.read_bytes())
    validate_dataset(ds)  # what intake (STOW-RS, `cxr-report run`) checks before storing: no decode
    check_pixel_data(ds)
    instance_from_dataset(ds)
    return load_for_model(dcm, size=size)


def run_heads(runner, paths: list[str], *, batch_size: int | None = None, progress: bool = False) -> list[HeadResult]:
    """Head outputs for image files through ingestion and the runner, `batch_size` images per call."""
    from tqdm import tqdm

    step = batch_size or runner.manifest.batching.max_batch_size
    out: list[HeadResult] = []
    with tempfile.TemporaryDirectory(prefix="cxr-serving-") as tmp:
        work = Path(tmp)
        for i in tqdm(range(0, len(paths), step), disable=not progress, leave=False, desc="serving path"):
            chunk = paths[i:i + step]
            loaded = [ingest_image(p, work, runner.image_size) for p in chunk]
            images = np.stack([pre.array.astype(np.float32, copy=False) for _, pre in loaded])
            outputs, _ = runner.predict_and_embed(images, None, generate=False)
            for path, (instance, pre), output in zip(chunk, loaded, outputs, strict=True):
                for pred in output.predictions:
                    if pred.bounding_box is not None:
                        pred.bounding_box = pre.geometry.to_source_box(pred.bounding_box)
                view = instance.view if instance.view is not None else View.UNKNOWN
                out.append(HeadResult(name=Path(path).name, output=output,
                                      image=ImageInfo(width=pre.geometry.source_cols, view=view),
                                      rows=pre.geometry.source_rows))
            for f in work.iterdir():
                f.unlink()
    return out


def report_heads(runner, heads: list[HeadResult], context: ClinicalContext | None, *, template: str = "standard",
                 confidence_threshold: float = 0.5, progress: bool = False) -> list[ServedReport]:
    """Drafts for head outputs under one context: decoder (distinct prompts once), render, QA."""
    from libs.domain.request import ReportRequest
    from libs.qa.review import review_report
    from libs.reporting.render import render_report

    context = context or ClinicalContext()  # the API's default: an empty context ("none" in the prompt)
    request = ReportRequest(clinical_context=context, report_template=template,
                            confidence_threshold=confidence_threshold)
    texts: list[str | None] = [None] * len(heads)
    if runner.has_decoder:
        texts = decode_distinct(runner, [h.output for h in heads], [context] * len(heads), progress=progress)
    served = []
    for k, (head, text) in enumerate(zip(heads, texts, strict=True)):
        output = head.output.model_copy(deep=True, update={"text": text})
        report = render_report(f"eval-{k}", f"eval-study-{k}", output, request, image=head.image)
        verdict = review_report(report, output, request, image=head.image)
        report = report.model_copy(update={"requires_radiologist_review": verdict.requires_review,
                                           "review_reasons": verdict.reasons, "qa": verdict.summary()})
        served.append(ServedReport(head=head, context=context, raw_text=text, report=report))
    return served


def decode_distinct(runner, outputs: list[ModelOutput], contexts: list, *, progress: bool = False) -> list[str]:
    """runner.generate_texts for each (output, context), decoding each distinct prompt once (prompts carry
    probabilities to two decimals, so many studies share one)."""
    from tqdm import tqdm

    from libs.bundle.decoder import prompt_for
    from libs.bundle.manifest import Generation

    fmt = (runner.manifest.generation or Generation()).prompt_format
    prompts = [prompt_for(o.predictions, c, fmt) for o, c in zip(outputs, contexts, strict=True)]
    first: dict[str, int] = {}
    for i, p in enumerate(prompts):
        first.setdefault(p, i)
    unique = list(first.values())
    step = runner.manifest.batching.max_batch_size
    decoded: dict[str, str] = {}
    for i in tqdm(range(0, len(unique), step), disable=not progress, leave=False, desc="drafts"):
        idx = unique[i:i + step]
        for j, text in zip(idx, runner.generate_texts([outputs[j] for j in idx], [contexts[j] for j in idx]),
                           strict=True):
            decoded[prompts[j]] = text
    return [decoded[p] for p in prompts]


def probabilities(heads: list[HeadResult], label: str) -> np.ndarray:
    return np.asarray([h.output.prediction(label).probability for h in heads], dtype=np.float64)
