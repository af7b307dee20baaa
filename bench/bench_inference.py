"""Inference runtime on this CPU: unbatched vs dynamically batched, and INT8 vs FP32 with output parity.

  python -m bench.bench_inference [--studies 48] [--bundle models/reference]

Side by side in one run, on the same preprocessed inputs (the bundled sample study plus flipped/shifted
variants, so the model sees different images), in `--rounds` rounds that each run every mode once (so
drift on a shared machine spreads over all modes; each ratio is reported per round, median first):
- unbatched: one study at a time through BundleRunner.predict (what a worker without batching does);
- batched: 8 client threads submit all studies at once through the DynamicBatcher (max batch and delay
  from the manifest), as the inference service does;
- both again with greedy decoding (CXR_NUM_BEAMS=1) when the bundle's manifest asks for beam search;
- INT8 vs FP32: the bundle's FP32 twin (`*.fp32.onnx` files in the bundle or in `--fp32-dir`, e.g. the
  export folder `.data/runs/reference/export`; otherwise re-exported from the bundle's `source/` weights)
  is run the same way and compared: speed, label agreement and identical text; and per part on the
  same work (encoder on the same images, decoder on the same prompts), since end to end each bundle's
  own scores write slightly different prompts.
Writes bench/results/inference_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from libs.bundle.runner import BundleRunner
from libs.core.config import REPO_ROOT
from libs.dicom import load_for_model
from libs.domain.context import ClinicalContext
from libs.runtime.batcher import DynamicBatcher

RESULTS = REPO_ROOT / "bench" / "results"


def inputs(size: int, n: int) -> list[np.ndarray]:
    study = sorted((REPO_ROOT / "samples" / "chest_pa").glob("*.dcm"))[0]
    base = load_for_model(study, size=size)[1].array.astype(np.float32)
    rng = np.random.default_rng(0)
    images = []
    for i in range(n):
        img = np.roll(base, (int(rng.integers(-8, 9)), int(rng.integers(-8, 9))), axis=(0, 1))
        if i % 2:
            img = img[:, ::-1]
        images.append(np.ascontiguousarray(np.clip(img * rng.uniform(0.9, 1.1), 0, 1), dtype=np.float32))
    return images


def stats(latencies_ms: list[float], wall_s: float) -> dict:
    a = np.asarray(latencies_ms)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1), "studies_per_hour": round(len(a) / wall_s * 3600)}


def run_unbatched(runner: BundleRunner, images: list[np.ndarray], ctx: ClinicalContext) -> tuple[dict, list]:
    outs, lat = [], []
    t0 = time.perf_counter()
    for img in images:
        s = time.perf_counter()
        outs.append(runner.predict(img[None], [ctx])[0])
        lat.append((time.perf_counter() - s) * 1000)
    return stats(lat, time.perf_counter() - t0), outs


def run_batched(runner: BundleRunner, images: list[np.ndarray], ctx: ClinicalContext) -> tuple[dict, list]:
    m = runner.manifest.batching
    batcher = DynamicBatcher(lambda items: runner.predict(np.stack(items), [ctx] * len(items)),
                             max_batch_size=m.max_batch_size, max_queue_delay_ms=m.max_queue_delay_ms,
                             max_pending=len(images))
    lat = [0.0] * len(images)

    def one(i: int):  # noqa: ANN202
        s = time.perf_counter()
        out = batcher.submit(images[i]).result()
        lat[i] = (time.perf_counter() - s) * 1000
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=m.max_batch_size) as pool:
        outs = list(pool.map(one, range(len(images))))
    wall = time.perf_counter() - t0
    batcher.close()
    result = stats(lat, wall)
    result["mean_batch_size"] = round(float(np.mean(batcher.batch_sizes)), 2)
    return result, outs


def fp32_twin(bundle: Path, workdir: Path, fp32_dir: Path | None = None) -> Path | None:
    """A copy of the bundle whose manifest names the FP32 files, when the bundle or `fp32_dir` has them
    for every ONNX file (a half-FP32 twin would measure neither)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    files = dict(manifest["files"])
    twins: dict[str, Path] = {}
    for role, name in files.items():
        if name and name.endswith(".onnx"):
            twin = name[: -len(".onnx")] + ".fp32.onnx"
            found = [d / twin for d in (bundle, fp32_dir) if d is not None and (d / twin).is_file()]
            if not found:
                return None
            twins[role] = found[0]
    if not twins:
        return None
    dest = workdir / "fp32"
    shutil.copytree(bundle, dest)
    for role, path in twins.items():
        if path.parent != bundle:
            shutil.copy2(path, dest / path.name)
        files[role] = path.name
    manifest["files"] = files
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def fp32_from_source(bundle: Path, workdir: Path) -> tuple[Path | None, str]:
    """The FP32 twin re-exported from the bundle's `source/` folder (the weights its INT8 files were
    quantised from; needs torch, i.e. the `.[train]` extra that `make install` installs)."""
    from libs.model.export import SOURCE_DIR, export_fp32  # torch is imported only when exporting

    source = bundle / SOURCE_DIR
    if not (source / "state.json").is_file():
        return None, f"no *.fp32.onnx twins and no {source.name}/ folder in the bundle: not measured"
    try:
        export_fp32(source, workdir / "fp32-export")
    except ImportError as exc:
        return None, f"re-exporting from {source} needs the .[train] extra ({exc}): not measured"
    return fp32_twin(bundle, workdir, workdir / "fp32-export"), f"re-exported from the bundle's {source.name}/ weights"


def parity(a: list, b: list) -> dict:
    labels = same_labels = same_text = 0
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x.predictions, y.predictions, strict=True):
            if p.assessed:
                labels += 1
                same_labels += p.positive == q.positive
        same_text += (x.text or "") == (y.text or "")
    return {"label_agreement": round(same_labels / max(labels, 1), 4), "identical_text_rate": round(same_text / len(a), 4)}


def _spread(values: list[float]) -> dict:
    return {"median": round(float(np.median(values)), 2), "min": round(min(values), 2), "max": round(max(values), 2),
            "rounds": [round(v, 2) for v in values]}


def components(int8: BundleRunner, fp32: BundleRunner, images: list[np.ndarray], ctx: ClinicalContext,
               reps: int = 3) -> dict:
    """INT8 vs FP32 per part, on the SAME work: the encoder on the same images (batch 1), the decoder on
    the same prompts (from the INT8 encoder's findings). End to end, each bundle writes its own prompts
    (its scores differ a little), so its decoding work differs too; this is the like-for-like view.
    Calls alternate between the two bundles, so drift on a shared machine hits both alike."""
    from libs.bundle.decoder import prompt_for

    xs = [int8._prepare(img[None]) for img in images]
    fmt = int8.manifest.generation.prompt_format
    prompts = [prompt_for(out.predictions, ctx, fmt) for out in int8.predict(np.stack(images), [ctx] * len(images))]
    enc = {"int8": 0.0, "fp32": 0.0}
    dec = {"int8": 0.0, "fp32": 0.0}
    for rep in range(reps):
        for i, (x, prompt) in enumerate(zip(xs, prompts, strict=True)):
            order = (("int8", int8), ("fp32", fp32)) if (i + rep) % 2 == 0 else (("fp32", fp32), ("int8", int8))
            for name, runner in order:
                s = time.perf_counter()
                runner._run(x, runner._output_names)
                enc[name] += time.perf_counter() - s
                s = time.perf_counter()
                runner._decoder.generate_many([prompt])
                dec[name] += time.perf_counter() - s
    n = reps * len(images)
    return {"encoder_ms_per_image": {k: round(v / n * 1000, 2) for k, v in enc.items()},
            "encoder_int8_vs_fp32": round(enc["fp32"] / enc["int8"], 2),
            "decoder_ms_per_report_same_prompts": {k: round(v / n * 1000, 2) for k, v in dec.items()},
            "decoder_int8_vs_fp32": round(dec["fp32"] / dec["int8"], 2),
            "study_int8_vs_fp32_same_work": round((enc["fp32"] + dec["fp32"]) / (enc["int8"] + dec["int8"]), 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; ratios are per round, median reported")
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "models" / "reference")
    parser.add_argument("--fp32-dir", type=Path, default=REPO_ROOT / ".data" / "runs" / "reference" / "export",
                        help="where to look for *.fp32.onnx twins besides the bundle (default: the export folder)")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference_cpu.json")
    args = parser.parse_args(argv)
    ctx = ClinicalContext(age=67, sex="M", indication="Shortness of breath")
    with tempfile.TemporaryDirectory() as tmp:
        bundle, kind = args.bundle, "installed bundle"
        if not (bundle / "manifest.json").is_file():
            from libs.bundle.testing import build_random_bundle

            bundle, kind = build_random_bundle(Path(tmp) / "random", image_size=512), "TEST-ONLY random bundle"
        runner = BundleRunner(bundle)
        images = inputs(runner.image_size, args.studies)
        result = {
            "benchmark": "inference runtime, CPU",
            "bundle": f"{kind}: {runner.model_name} {runner.model_version}",
            "providers": runner.providers,
            "cpu_count": os.cpu_count(),
            "has_decoder": runner.manifest.files.decoder is not None,
            "decoding": runner.manifest.generation.model_dump() if runner.manifest.generation else None,
            "method": (f"{args.rounds} rounds; each round runs every mode once over the same {args.studies} studies, "
                       "one mode after the other; ratios are per round (median, min, max)"),
        }
        twin = fp32_twin(bundle, Path(tmp), args.fp32_dir)
        where = args.fp32_dir.resolve()
        where = where.relative_to(REPO_ROOT) if where.is_relative_to(REPO_ROOT) else where
        result["fp32_graphs"] = f"*.fp32.onnx files in the bundle or {where}"
        if twin is None:
            twin, result["fp32_graphs"] = fp32_from_source(bundle, Path(tmp))
        fp32 = BundleRunner(twin) if twin is not None else None
        # The same bundle decoding greedily (CXR_NUM_BEAMS=1), when its manifest asks for beam search.
        greedy = BundleRunner(bundle, num_beams=1) if (runner.num_beams or 1) > 1 else None
        rounds: dict[str, list] = {"unbatched": [], "batched": [], "unbatched_fp32": [], "unbatched_greedy": [],
                                   "batched_greedy": []}
        outs8 = outs32 = None
        for _ in range(args.rounds):
            row, outs8 = run_unbatched(runner, images, ctx)
            rounds["unbatched"].append(row)
            rounds["batched"].append(run_batched(runner, images, ctx)[0])
            if fp32 is not None:
                row, outs32 = run_unbatched(fp32, images, ctx)
                rounds["unbatched_fp32"].append(row)
            if greedy is not None:
                rounds["unbatched_greedy"].append(run_unbatched(greedy, images, ctx)[0])
                rounds["batched_greedy"].append(run_batched(greedy, images, ctx)[0])
        last = {k: v[-1] for k, v in rounds.items() if v}
        for key, row in last.items():
            result[key] = {**row, "studies_per_hour_rounds": [r["studies_per_hour"] for r in rounds[key]]}
        result["batched_vs_unbatched_throughput"] = _spread(
            [b["studies_per_hour"] / u["studies_per_hour"] for b, u in zip(rounds["batched"], rounds["unbatched"])])
        if greedy is not None:
            result["batched_vs_unbatched_throughput_greedy"] = _spread(
                [b["studies_per_hour"] / u["studies_per_hour"]
                 for b, u in zip(rounds["batched_greedy"], rounds["unbatched_greedy"])])
        if fp32 is not None:
            result["int8_vs_fp32_throughput"] = _spread(
                [a["studies_per_hour"] / b["studies_per_hour"] for a, b in zip(rounds["unbatched"], rounds["unbatched_fp32"])])
            result["int8_vs_fp32_parity"] = parity(outs8, outs32)
            if runner.has_decoder:
                result["int8_vs_fp32_components"] = components(runner, fp32, images, ctx)
        else:
            result["int8_vs_fp32"] = result.pop("fp32_graphs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
