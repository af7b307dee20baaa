"""`cxr-report export`: trained weights -> ONNX encoder + decoder step -> static INT8 -> parity -> bundle.

    encoder.onnx   image [N,1,S,S] -> probabilities [N,14] (Platt-calibrated sigmoid), heatmaps [N,14,h,w]
                   (CAM: head weights on every feature-map cell), embedding [N,C] (pooled token), and
                   image_tokens [N,g^2,d] (projected patch tokens) when the decoder was trained with images
    decoder.onnx   one step with key/value cache (libs.bundle.decoder documents the I/O)
    tokenizer.json Hugging Face tokenizers file (read at serving time by libs.bundle.bpe)

Quantisation: onnxruntime.quantization.quantize_static, QDQ format, int8 weights (per channel), int8 or
uint8 activations (config `export.encoder_activations` / `decoder_activations`), MinMax calibration on
training images (encoder) and on decoder steps recorded while generating from training-split prompts
(decoder). In the encoder every convolution but the stem (`export.encoder_float_stem`, measured in
libs.model.config) is quantised; in the decoder only the weight MatMuls are
(attention score/value products, LayerNorm, softmax and the embedding lookup stay float). The FP32
graphs are kept in the run folder; parity (label agreement, AUROC, identical-token rate, BLEU/ROUGE
deltas) is measured and written into the manifest.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

from libs.bundle.decoder import PROMPT_FORMAT
from libs.domain.labels import CHEXPERT_LABELS
from libs.model.config import TrainConfig

OPSET = 17
IR_VERSION = 8


# The bundle's `source/` folder: the trained weights its ONNX files were exported from (fp16 safetensors
# shards + index), state.json (normalisation, Platt calibration, thresholds) and config.json (the recipe).
# The services never read it; it lets anyone re-export the FP32 graphs (INT8 vs FP32 benchmark, parity)
# or serve the same model in PyTorch (bench/bench_gpu.py) from a plain checkout, without the run folder.
SOURCE_DIR = "source"


def load_trained(cfg: TrainConfig, source: Path | None = None):
    """(ReportModel in eval mode, state dict from state.json), from the run folder or from a bundle's
    `source/` folder."""
    import torch

    from libs.model.checkpoint import load_sharded
    from libs.model.vlm import ReportModel

    out = cfg.out if source is None else Path(source)
    state = json.loads((out / "state.json").read_text(encoding="utf-8"))
    weights = load_sharded(out / "weights")
    vocab = weights["decoder.tok.weight"].shape[0]
    model = ReportModel(cfg.model, vocab)
    model.load_state_dict(weights)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, state


def _calibration_vectors(state: dict) -> tuple[np.ndarray, np.ndarray]:
    a = np.ones(len(CHEXPERT_LABELS), dtype=np.float32)
    b = np.zeros(len(CHEXPERT_LABELS), dtype=np.float32)
    for label, (aa, bb) in (state.get("calibration") or {}).items():
        j = CHEXPERT_LABELS.index(label)
        a[j], b[j] = aa, bb
    return a, b


def export_encoder(model, state: dict, path: Path, image_size: int, image_tokens: bool) -> Path:
    import torch

    a, b = (torch.from_numpy(v) for v in _calibration_vectors(state))

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model
            self.register_buffer("a", a)
            self.register_buffer("b", b)

        def forward(self, image):
            logits, features = self.m.detector(image)
            probs = torch.sigmoid(logits * self.a + self.b)
            outs = [probs, self.m.detector.cams(features), features.mean((2, 3))]
            if image_tokens:
                outs.append(self.m.image_tokens(features))
            return tuple(outs)

    names = ["probabilities", "heatmaps", "embedding"] + (["image_tokens"] if image_tokens else [])
    dyn = {"image": {0: "N"}, **{n: {0: "N"} for n in names}}
    _quiet_export(Encoder().eval(), (torch.zeros(2, 1, image_size, image_size),), str(path),
                  input_names=["image"], output_names=names, dynamic_axes=dyn, opset_version=OPSET)
    _set_ir(path)
    return path


def export_decoder(model, path: Path, image_tokens: bool, with_mask: bool = True) -> Path:
    """The decoder step graph; `with_mask=False` writes the older contract without attention_mask
    (one study at a time at serving), kept to test that such bundles still run."""
    import torch

    from libs.bundle.decoder import INPUT_IDS, INPUT_MASK, INPUT_PREFIX, OUTPUT_LOGITS, past_names, present_names

    dec = model.decoder
    n_layers, heads, dh = dec.n_layers, dec.n_heads, dec.d_model // dec.n_heads

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dec = dec

        def forward(self, input_ids, *rest):
            attention_mask, rest = (rest[0], rest[1:]) if with_mask else (None, rest)
            if image_tokens:
                prefix, flat = rest[0], rest[1:]
            else:
                prefix, flat = None, rest
            past = [(flat[2 * i], flat[2 * i + 1]) for i in range(n_layers)]
            logits, presents = self.dec(input_ids, prefix_embeds=prefix, past=past, attention_mask=attention_mask)
            return (logits[:, -1], *[t for kv in presents for t in kv])

    ids = torch.zeros(2, 3, dtype=torch.long)
    n_prefix = 2 if image_tokens else 0
    mask = torch.ones(2, 2 + n_prefix + 3, dtype=torch.long)
    mask[1, :2] = 0  # a left-padded row, so the traced graph is the general one
    past = [torch.zeros(2, heads, 2, dh) for _ in range(2 * n_layers)]
    inputs = [ids] + ([mask] if with_mask else []) + ([torch.zeros(2, n_prefix, dec.d_model)] if image_tokens else []) + past
    in_names = ([INPUT_IDS] + ([INPUT_MASK] if with_mask else []) + ([INPUT_PREFIX] if image_tokens else [])
                + [n for i in range(n_layers) for n in past_names(i)])
    out_names = [OUTPUT_LOGITS] + [n for i in range(n_layers) for n in present_names(i)]
    dyn = {INPUT_IDS: {0: "N", 1: "T"}, OUTPUT_LOGITS: {0: "N"}}
    if with_mask:
        dyn[INPUT_MASK] = {0: "N", 1: "K"}
    if image_tokens:
        dyn[INPUT_PREFIX] = {0: "N", 1: "P"}
    for i in range(n_layers):
        for n in past_names(i):
            dyn[n] = {0: "N", 2: "L"}
        for n in present_names(i):
            dyn[n] = {0: "N", 2: "L_out"}
    _quiet_export(Step().eval(), tuple(inputs), str(path), input_names=in_names,
                  output_names=out_names, dynamic_axes=dyn, opset_version=OPSET)
    _set_ir(path)
    return path


def write_source(cfg: TrainConfig, bundle: Path) -> Path:
    """Copy the run's weights, state.json and the recipe into `bundle/source/` (replacing an older copy)."""
    dest = Path(bundle) / SOURCE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(cfg.out / "weights", dest / "weights")
    shutil.copy(cfg.out / "state.json", dest / "state.json")
    (dest / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    return dest


def load_source(source: Path) -> tuple[TrainConfig, object, dict]:
    """(recipe, ReportModel, state) from a bundle's `source/` folder."""
    source = Path(source)
    cfg = TrainConfig.model_validate(json.loads((source / "config.json").read_text(encoding="utf-8")))
    model, state = load_trained(cfg, source)
    return cfg, model, state


def export_fp32(source: Path, dest: Path) -> dict[str, Path]:
    """Re-export the FP32 graphs (`encoder.fp32.onnx`, `decoder.fp32.onnx` when the model has a decoder)
    from a bundle's `source/` folder into `dest`: the same graphs `cxr-report export` quantised."""
    cfg, model, state = load_source(source)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    image_tokens = bool(state.get("image_tokens"))
    files = {"encoder": export_encoder(model, state, dest / "encoder.fp32.onnx", cfg.image_size, image_tokens)}
    if "lm" in state.get("done", []):
        files["decoder"] = export_decoder(model, dest / "decoder.fp32.onnx", image_tokens)
    return files


def _quiet_export(*args, **kwargs) -> None:
    """torch.onnx.export with the legacy TorchScript exporter (opset 17, IR 8 for older onnxruntimes;
    the dynamo exporter needs onnxscript and emits newer IR), its deprecation chatter silenced."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(*args, dynamo=False, **kwargs)


def _set_ir(path: Path) -> None:
    import onnx

    m = onnx.load(str(path))
    if m.ir_version > IR_VERSION:
        m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


# -- quantisation ---------------------------------------------------------------------------------

class _ListReader:
    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)

    def rewind(self):  # some onnxruntime versions call it
        pass


def _weight_matmuls(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}
    consts = {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    # Weights reached through a Transpose of an initializer count too (the tied output head).
    transposed = {n.output[0] for n in m.graph.node if n.op_type == "Transpose" and n.input[0] in inits}
    names = []
    for n in m.graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and (n.input[1] in inits | consts | transposed):
            names.append(n.name)
    return names


def _convolutions(path: Path) -> list[str]:
    """Names of a graph's Conv nodes in graph order (the first is the encoder's stem)."""
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]


def quantize(fp32: Path, int8: Path, feeds: list[dict], nodes: list[str] | None = None,
             op_types: list[str] | None = None, activations: str = "int8", symmetric: bool = False) -> Path:
    """Static INT8 (QDQ): int8 per-channel symmetric weights, `activations` ("int8" or "uint8"),
    asymmetric unless `symmetric` (TensorRT's form), MinMax-calibrated on `feeds`."""
    if symmetric and activations != "int8":
        raise ValueError("symmetric activations need activations='int8' (TensorRT takes no uint8 Q/DQ)")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, int8 = Path(fp32).resolve(), Path(int8).resolve()
    pre = int8.with_suffix(".pre.onnx")
    # Shape inference and calibration write scratch files (sym_shape_infer_temp.onnx, <uuid>.data) into
    # the working directory: run them in a temporary one, never in the caller's (the repository).
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        except Exception:  # symbolic shape inference can fail on exotic graphs; quantise the raw graph then
            shutil.copy(fp32, pre)
        quantize_static(str(pre), str(int8), _ListReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes,
                        op_types_to_quantize=op_types,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True})
    pre.unlink(missing_ok=True)
    _set_ir(int8)
    return int8


def decoder_calibration_feeds(decoder_path: Path, tokenizer_path: Path, prompts: list[str], max_steps: int = 24,
                              prefix: list[np.ndarray] | None = None) -> list[dict]:
    """Feeds of the first `max_steps` steps of greedy generation from each prompt (FP32 decoder)."""
    from libs.bundle.decoder import ReportDecoder

    dec = ReportDecoder(decoder_path, tokenizer_path)
    feeds = []
    for k, prompt in enumerate(prompts):
        past = dec._empty_past(1)
        step_ids = dec.prompt_ids(prompt)
        for step in range(max_steps):
            p = None
            if dec.has_prefix:
                p = prefix[k] if (prefix is not None and step == 0) else np.zeros((1, 0, dec.prefix_dim), np.float32)
            feed = dec.feed([step_ids], past, p)
            feeds.append(feed)
            out = dec._session.run(dec._output_names, feed)
            past = out[1:]
            nxt = int(np.argmax(out[0][0]))
            if nxt == dec.eos:
                break
            step_ids = [nxt]
    return feeds


# -- bundle -----------------------------------------------------------------------------------------

def run_encoder(path: Path, x: np.ndarray, names: list[str], batch: int = 64) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts: dict[str, list] = {n: [] for n in names}
    for i in range(0, len(x), batch):
        for n, v in zip(names, sess.run(names, {"image": x[i:i + batch]})):
            parts[n].append(v)
    return {n: np.concatenate(v) for n, v in parts.items()}


def normalized_images(arr: np.ndarray, norm: dict) -> np.ndarray:
    """Cached images (libs.model.images: uint16 display values) -> encoder input [N, 1, S, S], exactly
    as the runner normalises (libs.bundle.normalize)."""
    from libs.bundle.normalize import normalize_images
    from libs.model.images import to_unit

    return normalize_images(to_unit(arr), norm)[:, None]


def build_manifest(cfg: TrainConfig, state: dict, files: dict, metrics: dict, image_tokens: bool) -> dict:
    from libs.bundle.manifest import Manifest

    manifest = Manifest(
        format_version=1, name=cfg.name, version=cfg.version, description=cfg.description.strip(),
        labels=list(CHEXPERT_LABELS), assessed_labels=list(cfg.assessed_labels),
        thresholds={k: round(float(v), 6) for k, v in state["thresholds"].items()},
        input={"size": cfg.image_size, "channels": 1, "normalization": state["normalization"], "pixel_range": "0-1"},
        files=files, metrics=metrics,
        generation={"prompt_format": PROMPT_FORMAT, "max_new_tokens": cfg.export.max_new_tokens,
                    "image_tokens": image_tokens, "no_repeat_ngram_size": cfg.export.no_repeat_ngram_size,
                    "num_beams": cfg.export.num_beams, "length_penalty": cfg.export.length_penalty}
        if files.get("decoder") else None,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 100},
        intended_use=cfg.intended_use.strip(),
        test_only="TEST" in cfg.intended_use.upper() and "FIXTURE" in cfg.intended_use.upper(),
    )
    return manifest.model_dump(mode="json", exclude_none=True)


def export_bundle(cfg: TrainConfig, *, progress: bool = True) -> dict:
    """Export, quantise, measure parity and write the bundle into cfg.bundle_dir. Returns the parity dict."""
    from libs.model.parity import measure_parity
    from libs.model.train import load_datasets

    model, state = load_trained(cfg)
    out = cfg.out / "export"
    out.mkdir(parents=True, exist_ok=True)
    image_tokens = bool(state.get("image_tokens"))
    tok_path = cfg.out / "tokenizer.json"
    has_decoder = tok_path.is_file() and "lm" in state.get("done", [])

    enc32 = export_encoder(model, state, out / "encoder.fp32.onnx", cfg.image_size, image_tokens)
    dec32 = export_decoder(model, out / "decoder.fp32.onnx", image_tokens) if has_decoder else None

    data = load_datasets(cfg)
    from libs.model.images import load_images_cached

    cache = cfg.path(cfg.data.cache_dir)
    rng = random.Random(cfg.seed)
    train_imgs = data.images_in("train") or [p.image for p in data.paired_in("train")]
    calib_recs = rng.sample(train_imgs, min(cfg.export.calibration_images, len(train_imgs)))
    calib_x = normalized_images(load_images_cached([r.path for r in calib_recs], cfg.image_size, cache, progress),
                                state["normalization"])
    enc8 = out / "encoder.int8.onnx"
    dec8 = out / "decoder.int8.onnx"
    if cfg.export.quantize:
        convs = _convolutions(enc32)
        quantize(enc32, enc8, [{"image": calib_x[i:i + 1]} for i in range(len(calib_x))],
                 nodes=convs[1:] if cfg.export.encoder_float_stem else convs, op_types=["Conv"],
                 activations=cfg.export.encoder_activations, symmetric=cfg.export.symmetric_activations)
    else:
        shutil.copy(enc32, enc8)
    if dec32 is not None:
        from libs.model.prompts import training_prompt

        train_reports = data.reports_in("train")
        picked = rng.sample(train_reports, min(cfg.export.calibration_prompts, len(train_reports)))
        head = None
        if state.get("thresholds"):
            from libs.model.prompts import HeadErrorModel

            head = HeadErrorModel(state["val_scores"], state["thresholds"])
        prompts = [training_prompt(r, rng, cfg.findings_noise, head) for r in picked]
        prefix = None
        if image_tokens:
            toks = run_encoder(enc32, calib_x[: len(prompts)], ["image_tokens"])["image_tokens"]
            prefix = [toks[i:i + 1] for i in range(len(toks))]
            prompts = prompts[: len(toks)]
        if cfg.export.quantize:
            feeds = decoder_calibration_feeds(dec32, tok_path, prompts, prefix=prefix)
            quantize(dec32, dec8, feeds, nodes=_weight_matmuls(dec32), activations=cfg.export.decoder_activations,
                     symmetric=cfg.export.symmetric_activations)
        else:
            shutil.copy(dec32, dec8)

    parity = measure_parity(cfg, state, data, enc32, enc8, dec32, dec8 if dec32 else None, tok_path, progress)

    bundle = cfg.path(cfg.bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copy(enc8, bundle / "encoder.onnx")
    files = {"encoder": "encoder.onnx"}
    if dec32 is not None:
        shutil.copy(dec8, bundle / "decoder.onnx")
        shutil.copy(tok_path, bundle / "tokenizer.json")
        files.update(decoder="decoder.onnx", tokenizer="tokenizer.json")
    else:
        for stale in ("decoder.onnx", "tokenizer.json"):
            (bundle / stale).unlink(missing_ok=True)
    write_source(cfg, bundle)
    metrics = {"calibration": state["stages"].get("detector", {}).get("calibration", {}),
               "calibration_split": state.get("calibration_split"), "parity_int8_vs_fp32": parity,
               "train_seconds": state.get("train_seconds")}
    old = bundle / "manifest.json"
    if old.is_file():  # keep evaluation numbers written by `cxr-report evaluate` for the same version
        prev = json.loads(old.read_text(encoding="utf-8"))
        if prev.get("version") == cfg.version and "evaluation" in prev.get("metrics", {}):
            metrics["evaluation"] = prev["metrics"]["evaluation"]
    manifest = build_manifest(cfg, state, files, metrics, image_tokens)
    old.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return parity
