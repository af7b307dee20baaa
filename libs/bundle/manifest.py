"""The bundle manifest: what a model bundle folder declares about itself, and its validation.

A bundle is a folder holding `manifest.json` plus the files it names (ONNX encoder, optional
decoder and tokenizer). The project's reference model and a hospital's own model fill the same
contract, so every check here produces a one-line reason an operator can act on.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from libs.bundle.boxes import BOX_THRESHOLD, MAX_AREA_FRACTION
from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class _Strict(BaseModel):
    # Unknown keys are rejected: in a hand-written manifest they are almost always typos
    # ("treshold"), and silently ignoring them would hide a misconfigured bundle.
    model_config = ConfigDict(extra="forbid")


class PercentileStretch(_Strict):
    """Each image's own percentiles [low, high] are mapped to [0, 1] first (libs.bundle.normalize)."""

    low: float = Field(default=1.0, ge=0.0, lt=50.0, description="Lower percentile (0-50)")
    high: float = Field(default=99.0, gt=50.0, le=100.0, description="Upper percentile (50-100)")


class Normalization(_Strict):
    """The runner feeds the encoder `(x - mean) / std` where x is the image scaled to [0, 1], after the
    optional per-image percentile stretch."""

    mean: float
    std: float = Field(gt=0.0)
    stretch: PercentileStretch | None = Field(
        default=None, description="Per-image percentile stretch applied before mean/std (none when absent)")


class InputSpec(_Strict):
    size: int = Field(ge=16, le=4096, description="Side S of the square model input [N, 1, S, S]")
    channels: Literal[1] = Field(default=1, description="Grayscale only")
    normalization: Normalization
    pixel_range: Literal["0-1"] = Field(default="0-1", description="Range of x before normalization")


class BundleFiles(_Strict):
    """Role -> path relative to the bundle folder."""

    encoder: str = Field(description="ONNX image encoder (see docs/bundle.md for its I/O contract)")
    decoder: str | None = Field(default=None, description="ONNX report-text decoder")
    tokenizer: str | None = Field(default=None, description="Tokenizer file or folder for the decoder")

    @field_validator("encoder", "decoder", "tokenizer")
    @classmethod
    def _relative_inside_bundle(cls, value: str | None) -> str | None:
        # A bundle must be relocatable and must not reach outside its folder.
        if value is None:
            return value
        path = PurePosixPath(value.replace("\\", "/"))
        if not value or path.is_absolute() or ".." in path.parts or ":" in value:
            raise ValueError(f"{value!r} must be a relative path inside the bundle folder")
        return value

    def items(self) -> list[tuple[str, str]]:
        """(role, relative path) for every role the bundle provides."""
        return [(role, rel) for role, rel in self.model_dump().items() if rel is not None]


class Generation(_Strict):
    """How the runner drives `files.decoder` (docs/bundle.md, "Decoder")."""

    prompt_format: Literal["cxr-findings-v1", "cxr-findings-v2"] = Field(
        default="cxr-findings-v1",
        description="Prompt layout the decoder was trained on (libs.bundle.decoder): v1 writes probabilities to "
                    "one decimal, v2 to two")
    max_new_tokens: int = Field(default=160, ge=1, le=2048, description="Generation stops here without <eos>")
    image_tokens: bool = Field(
        default=False,
        description="True: the encoder outputs `image_tokens` and the decoder takes them as `prefix_embeds`",
    )
    no_repeat_ngram_size: int = Field(default=0, ge=0, le=16, description="Block repeated n-grams (0 = off)")
    num_beams: int = Field(default=1, ge=1, le=8, description="1 = greedy; k > 1 = beam search with k beams")
    length_penalty: float = Field(default=1.0, ge=0.0, le=4.0,
                                  description="Beam search ranks finished reports by log p / length ** this")


class BoxPolicy(_Strict):
    """When the runner draws a finding's box from its heatmap (libs.bundle.boxes, docs/bundle.md "Boxes").

    A box is the largest connected region where the label's class activation reaches `threshold` of its
    range, emitted only when it covers at most `max_area_fraction` of the model input. Without a box no
    side or location is claimed (render and QA read a missing box as "no side"), which is the honest
    answer for a diffuse activation. Manifests without this section get the defaults."""

    threshold: float = Field(
        default=BOX_THRESHOLD, gt=0.0, le=1.0,
        description="Fraction of a heatmap's min-max range a cell must reach to belong to the box's region")
    max_area_fraction: float = Field(
        default=MAX_AREA_FRACTION, gt=0.0, le=1.0,
        description="A box covering more than this fraction of the model input is not focal and is not emitted: "
                    "min-max normalisation turns any diffuse map into a huge box that would claim a side and "
                    "place the model never localised (1 = emit every box)")


class Batching(_Strict):
    max_batch_size: int = Field(default=8, ge=1, description="Largest batch sent to the encoder at once")
    max_queue_delay_ms: int = Field(default=100, ge=0, description="How long a batcher may wait to fill a batch")


class Manifest(_Strict):
    format_version: Literal[1] = Field(description="Version of this manifest format; this software reads 1")
    name: str = Field(min_length=1)
    version: str = Field(min_length=1, description="Written into every report as model_version")
    description: str = ""
    labels: list[str] = Field(
        description="Must be the 14 CheXpert observations, in libs.domain.labels order",
        json_schema_extra={"const": list(CHEXPERT_LABELS)},
    )
    assessed_labels: list[str] = Field(
        default_factory=lambda: list(CHEXPERT_LABELS),
        min_length=1,
        description="Labels the detection head was trained to assess; the others are reported as not assessed",
        json_schema_extra={"items": {"enum": list(CHEXPERT_LABELS)}, "uniqueItems": True},
    )
    thresholds: dict[str, float] = Field(
        description="Decision threshold in [0, 1] for every assessed label, and only for those",
        json_schema_extra={
            "propertyNames": {"enum": list(CHEXPERT_LABELS)},
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
        },
    )
    input: InputSpec
    files: BundleFiles
    metrics: dict[str, Any] = Field(default_factory=dict, description="Free-form measured numbers (AUROC...)")
    generation: Generation | None = Field(default=None, description="Decoder settings (only with files.decoder)")
    batching: Batching = Field(default_factory=Batching)
    boxes: BoxPolicy = Field(
        default_factory=BoxPolicy,
        description="When findings get a bounding box from the heatmaps (defaults apply when absent)")
    intended_use: str = Field(min_length=1)
    test_only: bool = Field(default=False, description="True for fixtures that must never serve patients")

    @field_validator("labels")
    @classmethod
    def _labels_are_chexpert(cls, labels: list[str]) -> list[str]:
        # Outputs are indexed by position, so a reordered list would silently swap findings.
        if tuple(labels) != CHEXPERT_LABELS:
            if len(labels) != len(CHEXPERT_LABELS):
                raise ValueError(f"must list the {len(CHEXPERT_LABELS)} CheXpert observations, got {len(labels)}")
            i = next(i for i, (a, b) in enumerate(zip(labels, CHEXPERT_LABELS)) if a != b)
            raise ValueError(f"must be the 14 CheXpert observations in order: labels[{i}] is {labels[i]!r}, "
                             f"expected {CHEXPERT_LABELS[i]!r}")
        return labels

    @field_validator("assessed_labels")
    @classmethod
    def _assessed_known_unique(cls, assessed: list[str]) -> list[str]:
        unknown = [a for a in assessed if a not in CHEXPERT_LABELS]
        if unknown:
            raise ValueError(f"unknown CheXpert observation(s): {', '.join(map(repr, unknown))}")
        if len(set(assessed)) != len(assessed):
            raise ValueError("contains duplicates")
        # Canonical order, so consumers can rely on it.
        return [label for label in CHEXPERT_LABELS if label in assessed]

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, thresholds: dict[str, float]) -> dict[str, float]:
        bad = [f"{k!r}={v}" for k, v in thresholds.items() if not 0.0 <= v <= 1.0]  # also rejects NaN
        if bad:
            raise ValueError(f"must be within [0, 1]: {', '.join(bad)}")
        return thresholds

    @model_validator(mode="after")
    def _thresholds_match_assessed(self) -> "Manifest":
        missing = [label for label in self.assessed_labels if label not in self.thresholds]
        if missing:
            raise ValueError(f"thresholds missing for assessed label(s): {', '.join(missing)}")
        # A threshold for a label the head does not assess suggests the manifest and the model disagree.
        extra = [label for label in self.thresholds if label not in self.assessed_labels]
        if extra:
            raise ValueError(f"thresholds given for label(s) that are not assessed: {', '.join(map(repr, extra))}")
        return self

    @model_validator(mode="after")
    def _decoder_needs_tokenizer(self) -> "Manifest":
        if self.files.decoder is not None and self.files.tokenizer is None:
            raise ValueError("files.decoder needs files.tokenizer")
        if self.generation is not None and self.files.decoder is None:
            raise ValueError("generation is set but files.decoder is not")
        return self

    def is_assessed(self, label: str) -> bool:
        return label in self.assessed_labels

    def file_path(self, bundle_dir: Path, role: str) -> Path | None:
        rel = getattr(self.files, role)
        return None if rel is None else Path(bundle_dir) / rel


def _format_validation_error(exc: ValidationError) -> str:
    """One line naming each failing field, e.g. `thresholds.Edema: must be within [0, 1]`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "manifest"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and loc == "format_version":
            msg = f"unsupported format_version {err.get('input')!r}; this software reads format_version {FORMAT_VERSION}"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def load_manifest(bundle_dir: Path | str) -> Manifest:
    """Read and validate `<bundle_dir>/manifest.json` and check that the files it lists exist.

    Raises BundleUnavailable with a one-line reason naming the problem.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleUnavailable(f"no model bundle installed at {bundle_dir}")
    manifest_path = bundle_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleUnavailable(f"model bundle at {bundle_dir} has no {MANIFEST_FILE}")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleUnavailable(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BundleUnavailable(f"{manifest_path} must hold a JSON object, got {type(raw).__name__}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise BundleUnavailable(f"invalid {manifest_path}: {_format_validation_error(exc)}") from None
    for role, rel in manifest.files.items():
        if not (bundle_dir / rel).exists():
            raise BundleUnavailable(f"model bundle at {bundle_dir}: files.{role} {rel!r} does not exist")
    return manifest
