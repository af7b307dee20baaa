"""Training configuration (YAML -> pydantic). configs/reference.yaml and configs/tiny.yaml are examples.

Relative paths are resolved against the repository root. Unknown keys are rejected (typos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from libs.core.config import REPO_ROOT


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageData(_Strict):
    kind: Literal["kermany", "mimic", "iu_xray", "none"] = "kermany"
    root: str | None = None  # kermany root / MIMIC-CXR-JPG root / IU png folder
    reports_root: str | None = None  # MIMIC reports root / IU XML folder
    split_file: str | None = "configs/splits/kermany_val.json"
    limit: int | None = None  # keep at most this many images per split (smoke tests)


class ReportData(_Strict):
    kind: Literal["iu", "paired", "none"] = "iu"  # paired: the paired data's reports
    source: str | None = None  # NLMCXR_reports.tgz or torchxrayvision wheel (default: libs.labeler.iu_reports)
    split_file: str | None = "configs/splits/iu_reports.json"
    limit: int | None = None


class PairedData(_Strict):
    kind: Literal["mimic", "iu_xray"]
    root: str
    reports_root: str | None = None
    uncertain: Literal["ignore", "ones", "zeros"] = "ignore"
    limit: int | None = None


class DataConfig(_Strict):
    images: ImageData = Field(default_factory=ImageData)
    reports: ReportData = Field(default_factory=ReportData)
    paired: PairedData | None = None
    cache_dir: str | None = ".data/cache"


class EncoderConfig(_Strict):
    widths: list[int] = [24, 32, 64, 128, 192]
    blocks: list[int] = [1, 1, 1, 1]
    dropout: float = 0.2


class DecoderConfig(_Strict):
    d_model: int = 192
    layers: int = 3
    heads: int = 4
    ff: int = 768
    max_positions: int = 320
    dropout: float = 0.1


class ModelConfig(_Strict):
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)
    patch_grid: int = 7  # image tokens = patch_grid^2 cells of the pooled last feature map
    vocab_size: int = 2000
    max_report_tokens: int = 160


class StageConfig(_Strict):
    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_accum: int = 1
    train_encoder: bool = False  # full stage only: also fine-tune the image encoder and head


class Stages(_Strict):
    detector: StageConfig = Field(default_factory=lambda: StageConfig(epochs=10, lr=2e-3, weight_decay=1e-4))
    lm: StageConfig = Field(default_factory=lambda: StageConfig(epochs=15, lr=1e-3))
    align: StageConfig = Field(default_factory=lambda: StageConfig(epochs=5, lr=1e-3))  # stage 1: projector only
    full: StageConfig = Field(default_factory=lambda: StageConfig(epochs=10, lr=2e-5))  # stage 2: projector + LM


class LossConfig(_Strict):
    report: float = 1.0
    detect: float = 0.5
    projector_l2: float = 1e-4


class FindingsNoise(_Strict):
    """How the prompt's findings are made during text training (see libs.model.prompts)."""

    p_reference: float = 0.5  # all 14 labels, clean (the "conditioned on reference labels" form)
    p_bundle: float = 0.25  # only the assessed labels, scores drawn from the detector's validation errors
    keep_label: float = 0.7  # the rest: each label kept with this probability, scores noisy
    miss: float = 0.15  # noisy form: a reference positive reported negative
    false_alarm: float = 0.02  # noisy form: a reference negative reported positive
    drop_context_field: float = 0.25
    # Reports positive (or uncertain) for an assessed label are repeated this many times per epoch in the
    # text stages (each copy with its own prompt noise): the bundle's own findings are rare in report corpora
    # (Pneumonia: 3.5 % of IU training reports) and would otherwise never make it into the generated text.
    oversample_assessed: int = 1


class ThresholdConfig(_Strict):
    critical_sensitivity: float = 0.98  # CRITICAL_LABELS: largest threshold reaching this validation sensitivity
    # Rule for every other assessed label: "youden" or "sensitivity:<x>".
    default_rule: str = "youden"
    rules: dict[str, str] = Field(default_factory=lambda: {"Pneumonia": "sensitivity:0.95"})


class ExportConfig(_Strict):
    calibration_images: int = 256
    calibration_prompts: int = 64
    parity_images: int | None = None  # None: the whole validation split
    parity_reports: int = 200
    max_new_tokens: int = 160
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    quantize: bool = True
    # Activation type of each static-INT8 graph (weights are always int8, per channel). onnxruntime's x86
    # int8 convolution kernels take uint8 activations: measured on this project's CPU, the encoder with
    # int8 activations ran 1.8x SLOWER than FP32 (3.2 vs 1.8 ms per image), with uint8 1.4x faster
    # (1.3 ms). The decoder's weight MatMuls showed no difference either way.
    encoder_activations: Literal["uint8", "int8"] = "uint8"
    decoder_activations: Literal["uint8", "int8"] = "int8"
    # TensorRT imports only symmetric int8 Q/DQ (zero points all 0, no uint8); the CPU prefers asymmetric.
    # A bundle meant for TensorRT INT8: both activations "int8" and this true.
    symmetric_activations: bool = False
    # Keep the encoder's first convolution (the stem: one input channel, reads the normalised pixels) in
    # FP32. Measured on bundle 1.3.0's validation split: with an INT8 stem the encoder's AUROC fell from
    # 0.997 (FP32) to 0.978 and 9 % of head decisions flipped (MinMax or percentile calibration alike);
    # with an FP32 stem, 0.997 and 0.1 % flipped, and the encoder ran no slower.
    encoder_float_stem: bool = True


class TrainConfig(_Strict):
    name: str = "cxr-reference"
    version: str = "1.0.0"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None
    output_dir: str = ".data/runs/reference"
    bundle_dir: str = "models/reference"
    image_size: int = 224
    assessed_labels: list[str] = ["Pneumonia"]
    # Training augmentation (libs.model.images.augment): true = "basic" (the 1.2.x recipe: affine,
    # contrast, brightness, gamma), "acquisition" adds exposure, blur/sharpening, noise, compression, zoom.
    augment: bool | Literal["basic", "acquisition"] = True
    # Per-image percentile stretch [low, high] before mean/std (libs.bundle.normalize), written into the
    # bundle manifest; None keeps plain mean/std (bundles <= 1.2.x).
    input_stretch: list[float] | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    stages: Stages = Field(default_factory=Stages)
    loss: LossConfig = Field(default_factory=LossConfig)
    findings_noise: FindingsNoise = Field(default_factory=FindingsNoise)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    description: str = ""
    intended_use: str = "Research and integration testing only; not a medical device."

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def out(self) -> Path:
        return self.path(self.output_dir)


def load_config(path: Path | str, overrides: dict | None = None) -> TrainConfig:
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return TrainConfig.model_validate(raw)
