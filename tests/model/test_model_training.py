"""The whole recipe on the tiny config: four stages on the synthetic MIMIC-CXR-layout fixture (image
tokens trained end to end), resume, fp16 shards, INT8 export with parity, the bundle serving text,
and the evaluation report. One module-scoped run (about 20 s on 2 CPU cores)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from model_helpers import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from libs.model.export import export_bundle
    from libs.model.train import train

    tmp = tmp_path_factory.mktemp("tiny")
    cfg = tiny_config(tmp)
    start = time.perf_counter()
    state = train(cfg, resume=False, progress=False)
    seconds = time.perf_counter() - start
    parity = export_bundle(cfg, progress=False)
    return cfg, state, seconds, parity


def _epochs(cfg, stage):
    events = [json.loads(line) for line in (cfg.out / "train_log.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("event") == "epoch" and e.get("stage") == stage]


def test_all_stages_run_and_fast(tiny):
    cfg, state, seconds, _ = tiny
    assert state["done"] == ["detector", "lm", "align", "full"]
    assert state["image_tokens"] is True
    assert seconds < 120


@pytest.mark.parametrize("stage", ["detector", "lm", "full"])
def test_loss_falls(tiny, stage):
    cfg = tiny[0]
    epochs = _epochs(cfg, stage)
    assert len(epochs) >= 3
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]


def test_image_token_path_is_trained_end_to_end(tiny):
    cfg = tiny[0]
    align, full = _epochs(cfg, "align"), _epochs(cfg, "full")
    assert align and full
    # stage 2 improves the image-conditioned validation report loss over stage 1
    assert full[-1]["val_report_loss"] < align[0]["val_report_loss"]


def test_calibration_and_thresholds(tiny):
    _, state, _, _ = tiny
    assert set(state["thresholds"]) == {"Cardiomegaly", "Pneumonia", "Pleural Effusion"}
    assert all(0.0 <= t <= 1.0 for t in state["thresholds"].values())
    report = state["stages"]["detector"]["calibration"]
    # Pleural Effusion is a critical finding: its rule is the 98 % sensitivity one
    assert report["Pleural Effusion"]["rule"] == "sensitivity:0.98"
    assert report["Pneumonia"]["rule"] == "sensitivity:0.95"


def test_weights_are_fp16_shards_and_reload(tiny, tmp_path):
    from libs.model.checkpoint import load_sharded, save_sharded

    cfg = tiny[0]
    shards = sorted((cfg.out / "weights").glob("model-*.safetensors"))
    assert shards and all(p.stat().st_size <= 16 * 1024 * 1024 for p in shards)
    state = load_sharded(cfg.out / "weights", dtype=torch.float16)
    assert state["decoder.tok.weight"].dtype == torch.float16
    # forcing small shards splits the same tensors over several files and round-trips them
    paths = save_sharded(state, tmp_path, max_bytes=64 * 1024 + 8 * 1024)
    assert len(paths) > 1
    again = load_sharded(tmp_path, dtype=torch.float16)
    assert again.keys() == state.keys() and all(torch.equal(again[k], state[k]) for k in state)


def test_resume_skips_finished_stages(tiny):
    from libs.model.train import train

    cfg = tiny[0]
    before = len(_epochs(cfg, "lm"))
    start = time.perf_counter()
    state = train(cfg, resume=True, progress=False)
    assert state["done"] == ["detector", "lm", "align", "full"]
    assert len(_epochs(cfg, "lm")) == before  # nothing retrained
    assert time.perf_counter() - start < 30


def test_resume_mid_stage(tmp_path):
    """A run stopped after epoch 2 of the lm stage continues at epoch 3 with the same result as an
    uninterrupted run."""
    from libs.model.train import Trainer

    cfg = tiny_config(tmp_path, **{"stages.align.epochs": 0, "stages.full.epochs": 0, "stages.detector.epochs": 1,
                                   "stages.lm.epochs": 3})
    straight = Trainer(cfg, resume=False, progress=False).run()
    cfg2 = tiny_config(tmp_path / "b", **{"stages.align.epochs": 0, "stages.full.epochs": 0,
                                          "stages.detector.epochs": 1, "stages.lm.epochs": 3})

    class Stop(Exception):
        pass

    trainer = Trainer(cfg2, resume=False, progress=False)
    original = trainer._save_checkpoint

    def save_then_stop(stage, epoch, opt, sched):
        original(stage, epoch, opt, sched)
        if stage == "lm" and epoch == 1:
            raise Stop

    trainer._save_checkpoint = save_then_stop
    with pytest.raises(Stop):
        trainer.run()
    resumed = Trainer(cfg2, resume=True, progress=False).run()
    a = straight["stages"]["lm"]["last_epoch"]
    b = resumed["stages"]["lm"]["last_epoch"]
    assert b["epoch"] == 3
    assert abs(a["train_loss"] - b["train_loss"]) < 1e-4


def test_int8_parity_written_to_manifest(tiny):
    from libs.bundle.manifest import load_manifest

    cfg, _, _, parity = tiny
    manifest = load_manifest(cfg.path(cfg.bundle_dir))
    assert manifest.generation is not None and manifest.generation.image_tokens
    assert manifest.metrics["parity_int8_vs_fp32"] == parity
    assert {"identical_token_rate", "bleu4_delta_points", "rougeL_delta_points"} <= set(parity["decoder"])
    assert all("label_agreement" in parity["encoder"][k] for k in manifest.assessed_labels)


def test_bundle_serves_text_with_image_tokens(tiny):
    from libs.bundle import BundleRunner
    from libs.domain.context import ClinicalContext

    cfg = tiny[0]
    runner = BundleRunner(cfg.path(cfg.bundle_dir))
    assert runner.has_decoder
    images = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    outputs = runner.predict(images, [ClinicalContext(age=70, sex="F", indication="Cough"), None, None])
    assert all(isinstance(o.text, str) and o.text for o in outputs)
    assert all(o.inference_ms > 0 for o in outputs)


def test_evaluate_writes_json_markdown_and_plots(tiny, tmp_path):
    from libs.model.evaluate import evaluate

    cfg = tiny[0]
    summary = evaluate(cfg, out_dir=tmp_path, progress=False, bootstrap=20)
    result = json.loads((tmp_path / "evaluation.json").read_text())
    systems = result["reports"]["conditions"]["P_paired_images"]["systems"]
    assert set(systems) == {"model", "constant_normal", "template", "retrieval"}
    for s in systems.values():
        assert {"BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr", "METEOR"} <= set(s["nlg"])
        assert {"missed", "hallucinated", "laterality", "severity"} == set(s["clinical"]["errors"])
    assert "bias" in systems["model"]
    assert (tmp_path / "evaluation.md").read_text().startswith("# Evaluation of cxr-tiny")
    assert (tmp_path / "roc.png").is_file() and (tmp_path / "reliability.png").is_file()
    assert "auroc_Pneumonia" in summary
    # QA review flag measured on the same drafts; critical studies counted from the reference reports.
    from libs.model.train import load_datasets
    from libs.qa.evaluation import reference_critical

    condition = result["reports"]["conditions"]["P_paired_images"]
    qa = condition["qa_flags"]["stated"]
    assert qa["studies"] == condition["n"]
    assert 0 <= qa["flagged"] <= qa["studies"]
    references = [p.report.text for p in load_datasets(cfg).paired_in("test")]
    assert qa["critical_studies"] == sum(bool(reference_critical(t)) for t in references) > 0
    assert qa["critical_flagged"] + len(qa["missed"]) == qa["critical_studies"]
    assert "## QA review flag" in (tmp_path / "evaluation.md").read_text()
    assert "P_paired_images.qa_flag" in summary


def test_torch_runtime_serves_the_same_model_as_the_fp32_onnx_bundle(tiny, tmp_path):
    """libs.model.torch_runtime (the GPU benchmark's path) behind the same BundleRunner: same
    probabilities and the same report texts as the FP32 ONNX export, here on the CPU in float32."""
    import shutil

    import numpy as np
    import torch

    from libs.bundle.runner import BundleRunner
    from libs.domain.context import ClinicalContext
    from libs.model.export import load_trained
    from libs.model.torch_runtime import torch_runner

    cfg = tiny[0]
    bundle = cfg.path(cfg.bundle_dir)
    fp32 = tmp_path / "fp32"
    shutil.copytree(bundle, fp32)
    for role in ("encoder", "decoder"):
        shutil.copy2(cfg.out / "export" / f"{role}.fp32.onnx", fp32 / f"{role}.onnx")
    onnx_runner = BundleRunner(fp32)
    model, state = load_trained(cfg)
    runner = torch_runner(bundle, model, state, device="cpu", dtype=torch.float32)
    assert runner.providers == ["torch:cpu:float32"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(5, runner.image_size, runner.image_size)).astype(np.float32)
    contexts = [ClinicalContext(age=30 + i, sex="F" if i % 2 else "M") for i in range(5)]
    ours, ref = runner.predict(images, contexts), onnx_runner.predict(images, contexts)
    for a, b in zip(ours, ref, strict=True):
        for p, q in zip(a.predictions, b.predictions, strict=True):
            assert (p.probability is None) == (q.probability is None)
            if p.probability is not None:
                assert abs(p.probability - q.probability) < 1e-4
        assert a.text == b.text and a.text


def test_gpu_benchmark_runs_end_to_end_on_the_cpu(tiny, tmp_path):
    """bench/bench_gpu.py is meant for a lent GPU; its whole path runs here on the CPU."""
    import yaml

    from bench.bench_gpu import main

    cfg = tiny[0]
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "gpu.json"
    result = main(["--config", str(config), "--device", "cpu", "--studies", "6", "--unbatched-studies", "2",
                   "--max-batch", "2", "4", "--clients", "3", "--delay-ms", "20", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["device"]["kind"] == "cpu" and result["dtype"] == "fp32"
    assert result["unbatched"]["n"] == 2
    assert [(r["max_batch_size"], r["clients"], r["n"]) for r in result["loads"]] == [(2, 3, 6), (4, 3, 6)]
    assert all(1 <= r["mean_batch_size"] <= r["max_batch_size"] for r in result["loads"])
    assert result["best_under_p99_limit"]["studies_per_hour"] == max(r["studies_per_hour"] for r in result["loads"])


def test_export_leaves_no_scratch_files_in_the_working_directory(tiny):
    from pathlib import Path

    cwd = Path.cwd()
    assert not (cwd / "sym_shape_infer_temp.onnx").exists()
    assert not [p.name for p in cwd.glob("*.data") if not p.name.startswith(".")]  # .data: our git-ignored run folder


def test_bundle_source_reexports_the_fp32_graphs_it_was_quantised_from(tiny, tmp_path):
    """The bundle's source/ folder (weights, state, recipe) gives back the FP32 graphs `export` quantised:
    the same outputs, from a checkout without the run folder; the benchmark's FP32 twin comes from it."""
    import onnxruntime as ort

    from bench.bench_inference import fp32_from_source
    from libs.bundle.runner import BundleRunner
    from libs.model.export import SOURCE_DIR, export_fp32

    cfg = tiny[0]
    bundle = cfg.path(cfg.bundle_dir)
    source = bundle / SOURCE_DIR
    copied, run = (json.loads((d / "state.json").read_text()) for d in (source, cfg.out))
    assert copied["thresholds"] == run["thresholds"] and copied["normalization"] == run["normalization"]
    assert sorted(p.name for p in (source / "weights").iterdir()) == sorted(p.name for p in (cfg.out / "weights").iterdir())
    files = export_fp32(source, tmp_path / "again")
    assert set(files) == {"encoder", "decoder"}
    x = np.random.default_rng(0).normal(size=(2, 1, cfg.image_size, cfg.image_size)).astype(np.float32)
    ours = ort.InferenceSession(str(files["encoder"])).run(None, {"image": x})
    theirs = ort.InferenceSession(str(cfg.out / "export" / "encoder.fp32.onnx")).run(None, {"image": x})
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert files["decoder"].read_bytes() == (cfg.out / "export" / "decoder.fp32.onnx").read_bytes()

    (tmp_path / "work").mkdir()
    twin, how = fp32_from_source(bundle, tmp_path / "work")
    assert twin is not None and "source" in how
    runner = BundleRunner(twin)
    assert runner.manifest.files.encoder == "encoder.fp32.onnx" and runner.manifest.files.decoder == "decoder.fp32.onnx"
    assert runner.predict(np.full((1, cfg.image_size, cfg.image_size), 0.5, np.float32))[0].text is not None


def test_inference_benchmark_compares_int8_with_the_fp32_re_exported_from_source(tiny, tmp_path):
    """bench/bench_inference.py on a bundle with a decoder and no FP32 files: the FP32 twin comes from
    source/, every ratio is reported per round, and the like-for-like per-part comparison is there."""
    from bench.bench_inference import main

    cfg = tiny[0]
    out = tmp_path / "inference.json"
    result = main(["--bundle", str(cfg.path(cfg.bundle_dir)), "--fp32-dir", str(tmp_path / "none"), "--studies", "4",
                   "--rounds", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert "source" in result["fp32_graphs"]
    for key in ("batched_vs_unbatched_throughput", "int8_vs_fp32_throughput"):
        spread = result[key]
        assert len(spread["rounds"]) == 2 and spread["min"] <= spread["median"] <= spread["max"]
    assert result["unbatched"]["n"] == result["unbatched_fp32"]["n"] == 4
    parts = result["int8_vs_fp32_components"]
    assert parts["encoder_int8_vs_fp32"] > 0 and parts["decoder_int8_vs_fp32"] > 0
    assert set(parts["decoder_ms_per_report_same_prompts"]) == {"int8", "fp32"}


@pytest.mark.parametrize("activations,symmetric", [("uint8", False), ("int8", True)])
def test_quantize_activation_forms(tiny, tmp_path, activations, symmetric):
    """uint8 asymmetric activations (the CPU's fast form) or symmetric int8 ones (the only Q/DQ TensorRT
    imports: every zero point 0); weights stay symmetric int8 either way."""
    import onnx
    from onnx import numpy_helper

    from libs.model.export import quantize

    cfg = tiny[0]
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.normal(size=(1, 1, cfg.image_size, cfg.image_size)).astype(np.float32)} for _ in range(4)]
    out = quantize(cfg.out / "export" / "encoder.fp32.onnx", tmp_path / "q.onnx", feeds, op_types=["Conv"],
                   activations=activations, symmetric=symmetric)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert zero_points
    want = np.uint8 if activations == "uint8" else np.int8
    assert all(z.dtype == want for z in zero_points)
    if symmetric:
        assert all(not z.any() for z in zero_points)
    else:
        assert any(z.any() for z in zero_points)  # asymmetric: some activation range is not centred on 0
    with pytest.raises(ValueError, match="symmetric"):
        quantize(cfg.out / "export" / "encoder.fp32.onnx", tmp_path / "bad.onnx", feeds, activations="uint8",
                 symmetric=True)


def test_gpu_benchmark_uses_the_bundle_source_without_a_run_folder(tiny, tmp_path):
    """A plain checkout has no run folder: bench_gpu serves the weights in the bundle's source/."""
    import yaml

    from bench.bench_gpu import main

    cfg = tiny[0]
    raw = cfg.model_dump(mode="json")
    raw["output_dir"] = str(tmp_path / "no-run-folder")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = main(["--config", str(config), "--device", "cpu", "--studies", "2", "--unbatched-studies", "1",
                   "--max-batch", "2", "--clients", "2", "--delay-ms", "10", "--out", str(tmp_path / "gpu.json")])
    assert "source" in result["model"] and result["unbatched"]["n"] == 1
