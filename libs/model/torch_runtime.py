"""The trained model run by PyTorch (e.g. on a CUDA GPU in FP16/BF16) behind the bundle runner.

The services run the ONNX bundle with onnxruntime. A GPU host that has PyTorch + CUDA but neither
onnxruntime-gpu nor TensorRT (the machine the GPU benchmark expects) can still run the *same* model
through the *same* serving code: these two classes look like onnxruntime sessions (the I/O names and
shapes of docs/bundle.md) but run the torch modules on a device, so libs.bundle.runner.BundleRunner and
libs.bundle.decoder.ReportDecoder (prompts, dynamic batching, left-padded batched beam search) work
unchanged. The decoder's key/value cache stays on the device between steps as torch tensors; only the
next-token logits come back to the host.

    model, state = load_trained(cfg)          # libs.model.export: weights + calibration from a run folder
    runner = torch_runner(bundle_dir, model, state, device="cuda", dtype=torch.bfloat16)
    runner.predict(images, contexts)          # as with the ONNX bundle
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from libs.bundle.contract import INPUT_IMAGE, OUTPUT_EMBEDDING, OUTPUT_HEATMAPS, OUTPUT_PROBABILITIES
from libs.bundle.decoder import (
    ENCODER_IMAGE_TOKENS,
    INPUT_IDS,
    INPUT_MASK,
    INPUT_PREFIX,
    OUTPUT_LOGITS,
    past_names,
    present_names,
)
from libs.domain.labels import CHEXPERT_LABELS


@dataclass(frozen=True)
class _Arg:
    """What onnxruntime's NodeArg tells about an input or output."""

    name: str
    type: str
    shape: list


def _device_tensor(value, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    return t.to(device=device, dtype=dtype or t.dtype, non_blocking=True)


class TorchEncoderSession:
    """ReportModel's detector (+ Platt calibration, CAMs, pooled embedding, image tokens) as an
    onnxruntime-like session with the encoder I/O of docs/bundle.md."""

    def __init__(self, model, state: dict, device: str | torch.device, dtype: torch.dtype, image_size: int,
                 image_tokens: bool = False):
        from libs.model.export import _calibration_vectors

        self.device, self.dtype = torch.device(device), dtype
        self.model = model.to(self.device, dtype).eval()
        a, b = _calibration_vectors(state)
        self.a, self.b = (torch.from_numpy(v).to(self.device) for v in (a, b))
        self.image_tokens = image_tokens
        self._inputs = [_Arg(INPUT_IMAGE, "tensor(float)", ["N", 1, image_size, image_size])]
        self._outputs = [_Arg(OUTPUT_PROBABILITIES, "tensor(float)", ["N", len(CHEXPERT_LABELS)]),
                         _Arg(OUTPUT_HEATMAPS, "tensor(float)", ["N", len(CHEXPERT_LABELS), "h", "w"]),
                         _Arg(OUTPUT_EMBEDDING, "tensor(float)", ["N", "D"])]
        if image_tokens:
            self._outputs.append(_Arg(ENCODER_IMAGE_TOKENS, "tensor(float)", ["N", "P", "D"]))

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [f"torch:{self.device}:{str(self.dtype).removeprefix('torch.')}"]

    @torch.no_grad()
    def run(self, output_names: list[str], feed: dict) -> list[np.ndarray]:
        image = _device_tensor(feed[INPUT_IMAGE], self.device, self.dtype)
        logits, features = self.model.detector(image)
        values = {OUTPUT_PROBABILITIES: torch.sigmoid(logits.float() * self.a + self.b),
                  OUTPUT_HEATMAPS: self.model.detector.cams(features),
                  OUTPUT_EMBEDDING: features.mean((2, 3))}
        if self.image_tokens:
            values[ENCODER_IMAGE_TOKENS] = self.model.image_tokens(features)
        return [values[name].float().cpu().numpy() for name in output_names]


class TorchDecoderSession:
    """ReportModel's decoder as an onnxruntime-like *step* session (docs/bundle.md, with attention_mask).
    Returns the logits as numpy and the present key/values as device tensors, which ReportDecoder gathers
    (beam reordering) and feeds back without a round trip through the host."""

    def __init__(self, model, device: str | torch.device, dtype: torch.dtype, image_tokens: bool = False):
        self.device, self.dtype = torch.device(device), dtype
        self.decoder = model.decoder.to(self.device, dtype).eval()
        d = self.decoder
        heads, dh = d.n_heads, d.d_model // d.n_heads
        self.image_tokens = image_tokens
        self._inputs = [_Arg(INPUT_IDS, "tensor(int64)", ["N", "T"]), _Arg(INPUT_MASK, "tensor(int64)", ["N", "K"])]
        if image_tokens:
            self._inputs.append(_Arg(INPUT_PREFIX, "tensor(float)", ["N", "P", d.d_model]))
        self._outputs = [_Arg(OUTPUT_LOGITS, "tensor(float)", ["N", "V"])]
        for i in range(d.n_layers):
            self._inputs += [_Arg(n, "tensor(float)", ["N", heads, "L", dh]) for n in past_names(i)]
            self._outputs += [_Arg(n, "tensor(float)", ["N", heads, "L_out", dh]) for n in present_names(i)]

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs

    @torch.no_grad()
    def run(self, output_names: list[str], feed: dict) -> list:
        ids = _device_tensor(feed[INPUT_IDS], self.device)
        mask = _device_tensor(feed[INPUT_MASK], self.device) if INPUT_MASK in feed else None
        prefix = feed.get(INPUT_PREFIX)
        if prefix is not None:
            prefix = _device_tensor(prefix, self.device, self.dtype) if prefix.shape[1] else None
        past = []
        for i in range(self.decoder.n_layers):
            k, v = past_names(i)
            past.append((_device_tensor(feed[k], self.device, self.dtype), _device_tensor(feed[v], self.device, self.dtype)))
        logits, presents = self.decoder(ids, prefix_embeds=prefix, past=past, attention_mask=mask)
        values = {OUTPUT_LOGITS: logits[:, -1].float().cpu().numpy()}
        for i, (k, v) in enumerate(presents):
            kn, vn = present_names(i)
            values[kn], values[vn] = k, v
        return [values[name] for name in output_names]


def torch_runner(bundle_dir: Path | str, model, state: dict, *, device: str = "cuda",
                 dtype: torch.dtype = torch.bfloat16):
    """A BundleRunner over the bundle's manifest and tokenizer whose encoder and decoder run in torch.
    `model`/`state` come from libs.model.export.load_trained (the weights the bundle was exported from)."""
    from libs.bundle.manifest import load_manifest
    from libs.bundle.runner import BundleRunner

    manifest = load_manifest(Path(bundle_dir))
    image_tokens = bool(manifest.generation and manifest.generation.image_tokens)
    encoder = TorchEncoderSession(model, state, device, dtype, manifest.input.size, image_tokens)
    decoder = TorchDecoderSession(model, device, dtype, image_tokens) if manifest.files.decoder else None
    return BundleRunner(bundle_dir, sessions=(encoder, decoder))
