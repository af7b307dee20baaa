"""Runs a bundle's ONNX encoder and turns its outputs into ModelOutput objects.

Thread safety: one BundleRunner may be shared, but its calls are serialised by an internal lock
(predict from one thread at a time); use one runner per worker process to run in parallel, or
batch images into one call, which is what the encoder is fast at.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from libs.bundle.boxes import heatmap_box
from libs.bundle.contract import (
    INPUT_IMAGE,
    OUTPUT_EMBEDDING,
    OUTPUT_HEATMAPS,
    OUTPUT_PROBABILITIES,
    check_encoder_io,
    check_encoder_outputs,
)
from libs.bundle.manifest import Generation, Manifest, load_manifest
from libs.bundle.normalize import normalize_images
from libs.bundle.providers import choose_providers, create_session, first_line
from libs.core.errors import BundleUnavailable
from libs.domain.labels import CHEXPERT_LABELS
from libs.domain.model_output import LabelPrediction, ModelOutput

log = logging.getLogger(__name__)

# "No Finding" is derived and never a finding in a report, so it never gets a box.
_NO_BOX_LABELS = frozenset({"No Finding"})


class BundleRunner:
    """Loads a bundle folder and runs its encoder.

    `providers` overrides the execution-provider preference (TensorRT -> CUDA -> CPU, filtered by
    what the installed onnxruntime offers). Raises BundleUnavailable when the bundle is missing,
    invalid, or its encoder does not fit the I/O contract in docs/bundle.md.
    """

    def __init__(
        self,
        bundle_dir: Path | str,
        providers: list[str] | None = None,
        *,
        session_options: ort.SessionOptions | None = None,
        cache_dir: Path | str | None = None,
        sessions: tuple | None = None,
        num_beams: int | None = None,
    ):
        # `sessions`: (encoder, decoder or None) objects with onnxruntime's session interface, used
        # instead of loading the bundle's ONNX files (libs.model.torch_runtime runs the model in torch).
        # `num_beams`: overrides the manifest's generation.num_beams (1 = greedy), e.g. CXR_NUM_BEAMS.
        if num_beams is not None and not 1 <= num_beams <= 8:
            raise ValueError(f"num_beams must be between 1 and 8, got {num_beams}")
        self._num_beams = num_beams
        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = load_manifest(self.bundle_dir)
        if self.manifest.test_only:
            log.warning("bundle %s is a TEST FIXTURE (test_only): its outputs are meaningless", self.bundle_dir)
        encoder_path = self.bundle_dir / self.manifest.files.encoder
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._injected_decoder = sessions[1] if sessions else None
        if sessions:
            self._session = sessions[0]
            requested = list(self._session.get_providers())
        else:
            requested = choose_providers(ort.get_available_providers(), providers)
            try:
                self._session = create_session(encoder_path, requested, session_options, cache_dir=self.cache_dir,
                                               bundle_dir=self.bundle_dir)
            except Exception as exc:  # onnxruntime raises its own pybind exception types
                raise BundleUnavailable(f"cannot load encoder {encoder_path}: {first_line(exc)}") from None
        # What onnxruntime actually enabled: a GPU provider whose libraries fail to load is dropped.
        self.providers: list[str] = list(self._session.get_providers())
        log.info(
            "bundle %s %s: encoder on %s (requested %s)",
            self.manifest.name,
            self.manifest.version,
            ", ".join(self.providers),
            ", ".join(requested),
        )
        self._io = check_encoder_io(self._session.get_inputs(), self._session.get_outputs(), self.image_size)
        self._assessed_idx = [CHEXPERT_LABELS.index(label) for label in self.manifest.assessed_labels]
        self._output_names = list(self._io.output_names)
        self._decoder = self._load_decoder(providers, session_options)
        self._lock = threading.Lock()
        self._warm_up()

    @property
    def image_size(self) -> int:
        return self.manifest.input.size

    @property
    def model_name(self) -> str:
        return self.manifest.name

    @property
    def model_version(self) -> str:
        return self.manifest.version

    @property
    def has_heatmaps(self) -> bool:
        return self._io.has_heatmaps

    @property
    def has_embedding(self) -> bool:
        return self._io.has_embedding

    @property
    def has_decoder(self) -> bool:
        return self._decoder is not None

    @property
    def num_beams(self) -> int | None:
        """Beams the report decoder uses (1 = greedy), or None without a decoder."""
        return None if self._decoder is None else self._decoder.num_beams

    def _load_decoder(self, providers, session_options):
        """The bundle's report decoder (libs.bundle.decoder), or None when the bundle has none."""
        m = self.manifest
        if m.files.decoder is None:
            return None
        from libs.bundle.decoder import ENCODER_IMAGE_TOKENS, ReportDecoder

        gen = m.generation or Generation()
        decoder = ReportDecoder(self.bundle_dir / m.files.decoder, self.bundle_dir / m.files.tokenizer,
                                max_new_tokens=gen.max_new_tokens, no_repeat_ngram_size=gen.no_repeat_ngram_size,
                                num_beams=self._num_beams or gen.num_beams, length_penalty=gen.length_penalty,
                                providers=list(self.providers), session_options=session_options,
                                cache_dir=self.cache_dir, session=self._injected_decoder)
        log.info("report decoding: %s (%s)", "greedy" if decoder.num_beams == 1 else f"beam search, {decoder.num_beams} beams",
                 "num_beams override" if self._num_beams else "bundle manifest")
        if gen.image_tokens:
            if ENCODER_IMAGE_TOKENS not in {o.name for o in self._session.get_outputs()}:
                raise BundleUnavailable(f"generation.image_tokens is true but the encoder has no {ENCODER_IMAGE_TOKENS!r} output")
            if not decoder.has_prefix:
                raise BundleUnavailable("generation.image_tokens is true but the decoder has no prefix_embeds input")
            self._output_names.append(ENCODER_IMAGE_TOKENS)
        return decoder

    # -- public API -------------------------------------------------------------------------

    def predict(self, images: np.ndarray, contexts=None) -> list[ModelOutput]:
        """One ModelOutput per image of a float32 batch [N, S, S] or [N, 1, S, S] with values in [0, 1].

        Boxes are [x0, y0, x1, y1] in MODEL INPUT pixel edges (pixel i covers [i, i + 1), so
        0 <= x0 < x1 <= S; x = column, y = row); mapping them back to the source image is the
        caller's job (libs.dicom.geometry knows the resize/padding).

        When the bundle has a decoder, `text` holds the generated report, conditioned on the image's
        predictions and on `contexts`: one libs.domain.context.ClinicalContext (or None) for all images,
        or a list with one per image.
        """
        return self.predict_and_embed(images, contexts)[0]

    def embed(self, images: np.ndarray) -> np.ndarray | None:
        """Embeddings [N, D] float32 for drift monitoring, or None when the encoder has none."""
        x = self._prepare(images)
        if not self._io.has_embedding:
            return None
        parts = [self._run(chunk, [OUTPUT_EMBEDDING])[OUTPUT_EMBEDDING] for chunk in self._chunks(x)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def predict_and_embed(self, images: np.ndarray, contexts=None, *, generate: bool = True
                          ) -> tuple[list[ModelOutput], np.ndarray | None]:
        """predict() and embed() from a single encoder pass. generate=False skips report decoding (the
        evaluation decodes the same head outputs under several contexts with generate_texts)."""
        x = self._prepare(images)
        if isinstance(contexts, (list, tuple)):
            if len(contexts) != len(x):
                raise ValueError(f"got {len(contexts)} contexts for {len(x)} images")
            per_image = list(contexts)
        else:
            per_image = [contexts] * len(x)
        outputs: list[ModelOutput] = []
        embeddings: list[np.ndarray] = []
        for chunk in self._chunks(x):
            start = time.perf_counter()
            result = self._run(chunk, self._output_names)
            heatmaps = result.get(OUTPUT_HEATMAPS)
            batch = [self._to_output(result[OUTPUT_PROBABILITIES][i], None if heatmaps is None else heatmaps[i])
                     for i in range(len(chunk))]
            # Every image of a chunk waited for the whole chunk, so each reports the chunk's time.
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            for out in batch:
                out.inference_ms = elapsed_ms
            if self._decoder is not None and generate:
                tokens = result.get("image_tokens")
                contexts = per_image[len(outputs) : len(outputs) + len(batch)]
                prefixes = None if tokens is None else np.ascontiguousarray(tokens, dtype=np.float32)
                for out, generated in zip(batch, self._generate(batch, contexts, prefixes), strict=True):
                    out.text = generated.text
                    out.text_sees_image = prefixes is not None
                    out.inference_ms += generated.ms  # encoder batch + the chunk's report decoding
            outputs.extend(batch)
            if OUTPUT_EMBEDDING in result:
                embeddings.append(result[OUTPUT_EMBEDDING])
        if not self._io.has_embedding:
            return outputs, None
        return outputs, (np.concatenate(embeddings) if embeddings else np.zeros((0, 0), dtype=np.float32))

    # -- internals --------------------------------------------------------------------------

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        """Validate the batch and apply the manifest's normalisation -> float32 [N, 1, S, S]."""
        s = self.image_size
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.float32:
            raise ValueError(f"images must be float32 scaled to [0, 1], got dtype {images.dtype}")
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4 or images.shape[1:] != (1, s, s):
            raise ValueError(
                f"images must have shape [N, {s}, {s}] or [N, 1, {s}, {s}] for this bundle, got {list(images.shape)}"
            )
        if images.size and not np.all(np.isfinite(images)):
            raise ValueError("images contain NaN or infinite values")
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError(
                f"images must be scaled to [0, 1], got values in [{images.min():.4g}, {images.max():.4g}]"
            )
        return normalize_images(images, self.manifest.input.normalization)

    def _chunks(self, x: np.ndarray) -> list[np.ndarray]:
        step = self.manifest.batching.max_batch_size
        return [x[i : i + step] for i in range(0, len(x), step)]

    def generate_texts(self, outputs: list[ModelOutput], contexts: list) -> list[str]:
        """Report texts for head outputs of predict(..., generate=False) under the given contexts, one per
        output, decoded max_batch_size at a time as in predict(). Only for bundles whose decoder reads no
        image tokens (the outputs do not keep them)."""
        if self._decoder is None:
            raise ValueError("this bundle has no report decoder")
        if (self.manifest.generation or Generation()).image_tokens:
            raise ValueError("this bundle's decoder reads image tokens: use predict()")
        step = self.manifest.batching.max_batch_size
        texts: list[str] = []
        for i in range(0, len(outputs), step):
            texts += [g.text for g in self._generate(outputs[i:i + step], contexts[i:i + step], None)]
        return texts

    def regenerate_text(self, image: np.ndarray, output: ModelOutput, context=None) -> str:
        """The report text for `output`'s calls (say a radiologist's corrected ones) on one image [S, S]:
        the decoder conditioned on those calls instead of the head's (RaDialog's correction task).
        The encoder runs again only when the decoder reads its image tokens."""
        if self._decoder is None:
            raise ValueError("this bundle has no report decoder")
        from libs.bundle.decoder import ENCODER_IMAGE_TOKENS

        prefixes = None
        if (self.manifest.generation or Generation()).image_tokens:
            tokens = self._run(self._prepare(image[None]), [ENCODER_IMAGE_TOKENS])[ENCODER_IMAGE_TOKENS]
            prefixes = np.ascontiguousarray(tokens, dtype=np.float32)
        return self._generate([output], [context], prefixes)[0].text

    def _generate(self, outputs: list[ModelOutput], contexts: list, prefixes: np.ndarray | None):
        """The chunk's reports, decoded together when the decoder takes an attention mask."""
        from libs.bundle.decoder import prompt_for

        fmt = (self.manifest.generation or Generation()).prompt_format
        prompts = [prompt_for(out.predictions, ctx, fmt) for out, ctx in zip(outputs, contexts, strict=True)]
        with self._lock:
            return self._decoder.generate_many(prompts, prefixes)

    def _run(self, x: np.ndarray, output_names: list[str]) -> dict[str, np.ndarray]:
        with self._lock:
            arrays = self._session.run(output_names, {INPUT_IMAGE: x})
        result = dict(zip(output_names, arrays))
        check_encoder_outputs(result, len(x), self._assessed_idx)
        return result

    def _to_output(self, probs: np.ndarray, heatmaps: np.ndarray | None) -> ModelOutput:
        m = self.manifest
        predictions = []
        for idx, label in enumerate(CHEXPERT_LABELS):
            if not m.is_assessed(label):
                # Not assessed is reported as unknown, never as a negative.
                predictions.append(LabelPrediction(label=label))
                continue
            p = min(max(float(probs[idx]), 0.0), 1.0)
            threshold = m.thresholds[label]
            box = None
            if heatmaps is not None and p >= threshold and label not in _NO_BOX_LABELS:
                # The manifest's policy: no box unless the activation is focal (docs/bundle.md, "Boxes").
                box = heatmap_box(heatmaps[idx], self.image_size, m.boxes.threshold, m.boxes.max_area_fraction)
            predictions.append(LabelPrediction(label=label, probability=p, threshold=threshold, bounding_box=box))
        return ModelOutput(model_name=m.name, model_version=m.version, predictions=predictions)

    def _warm_up(self) -> None:
        """Run a small batch once: the first run allocates memory / builds GPU engines, and a batch of 2
        catches exports whose batch dimension is declared dynamic but hard-coded inside the graph."""
        n = min(2, self.manifest.batching.max_batch_size)
        x = self._prepare(np.full((n, self.image_size, self.image_size), 0.5, dtype=np.float32))
        try:
            self._run(x, self._output_names)
        except BundleUnavailable as exc:
            raise BundleUnavailable(f"encoder warm-up failed: {exc.reason}") from None
        except Exception as exc:
            raise BundleUnavailable(f"encoder warm-up failed: {first_line(exc)}") from None
        if self._decoder is not None:
            try:
                self._decoder.warm_up()
            except Exception as exc:
                raise BundleUnavailable(f"decoder warm-up failed: {first_line(exc)}") from None
