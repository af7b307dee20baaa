"""The reference model on a GPU (PyTorch CUDA, FP16/BF16) behind the same serving code and batcher.

    python -m bench.bench_gpu [--config configs/reference.yaml] [--dtype bf16] [--studies 512]

For a GPU host with PyTorch + CUDA but no onnxruntime-gpu / TensorRT: the trained weights (the run
folder `cxr-report train` leaves, e.g. `.data/runs/reference`, when it is there; otherwise the copy in
the bundle's `source/` folder, so a plain checkout is enough) are served through libs.model.torch_runtime,
i.e. the same BundleRunner, prompts, left-padded batched beam search and DynamicBatcher as the ONNX
bundle, with the key/value cache kept on the GPU.

Measured side by side in one run on the bundled sample study and flipped/shifted variants:
- unbatched: one study at a time;
- for each max batch size (default 8, the design's, and larger ones) and each number of concurrent
  clients, a closed-loop load: latency per study (submit -> report) P50/P95/P99, studies/hour, mean
  batch size;
- the best studies/hour whose P99 stays under --p99-limit-s (15 s: the design's GPU target is 200
  studies/hour/GPU at that latency);
- peak GPU memory (torch.cuda.max_memory_allocated) and the GPU's description.
Runs on the CPU too (--device cpu), which is how the tests exercise it. Writes
bench/results/inference_torch_<device kind>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np

from bench.bench_inference import RESULTS, inputs, stats
from libs.core.config import REPO_ROOT
from libs.domain.context import ClinicalContext
from libs.runtime.batcher import DynamicBatcher

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def device_description(torch, device: str) -> dict:
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        return {"kind": "cuda", "name": torch.cuda.get_device_name(0), "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}", "torch": torch.__version__, "cuda": torch.version.cuda}
    return {"kind": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def closed_loop(runner, images: list[np.ndarray], ctx: ClinicalContext, clients: int, max_batch: int,
                delay_ms: float) -> dict:
    """`clients` threads each submit their next study as soon as their previous report is back."""
    batcher = DynamicBatcher(lambda items: runner.predict(np.stack(items), [ctx] * len(items)),
                             max_batch_size=max_batch, max_queue_delay_ms=delay_ms, max_pending=max(clients, max_batch))
    lat: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(len(images)))

    def client() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            s = time.perf_counter()
            batcher.submit(images[i]).result()
            with lock:
                lat.append((time.perf_counter() - s) * 1000)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    batcher.close()
    result = stats(lat, wall)
    result.update(clients=clients, max_batch_size=max_batch, max_queue_delay_ms=delay_ms,
                  mean_batch_size=round(float(np.mean(batcher.batch_sizes)), 2))
    return result


def main(argv: list[str] | None = None) -> dict:
    import torch

    from libs.model.config import load_config
    from libs.model.export import SOURCE_DIR, load_trained
    from libs.model.torch_runtime import torch_runner

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "reference.yaml")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="training run folder (default: the config's output_dir when it holds state.json, else the bundle's source/)")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder for manifest + tokenizer (default: the config's)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: bf16 on cuda, fp32 on cpu")
    parser.add_argument("--studies", type=int, default=512)
    parser.add_argument("--unbatched-studies", type=int, default=32)
    parser.add_argument("--max-batch", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--p99-limit-s", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    cfg = load_config(args.config, {"output_dir": str(args.run_dir)} if args.run_dir else None)
    bundle = args.bundle or cfg.path(cfg.bundle_dir)
    # The weights: the run folder when it is here, else the bundle's source/ copy (a plain checkout).
    weights = cfg.out if (args.run_dir or (cfg.out / "state.json").is_file()) else bundle / SOURCE_DIR
    model, state = load_trained(cfg, weights)
    runner = torch_runner(bundle, model, state, device=device, dtype=getattr(torch, DTYPES[dtype_name]))
    ctx = ClinicalContext(age=67, sex="M", indication="Shortness of breath")
    images = inputs(runner.image_size, max(args.studies, args.unbatched_studies))
    for img in images[:4]:  # warm-up: CUDA kernels, allocator
        runner.predict(img[None], [ctx])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    result: dict = {"benchmark": "reference model served by PyTorch with the platform's batcher",
                    "device": device_description(torch, device), "dtype": dtype_name,
                    "model": f"{runner.model_name} {runner.model_version} (weights: {weights})",
                    "decoding": runner.manifest.generation.model_dump() if runner.manifest.generation else None}
    lat = []
    t0 = time.perf_counter()
    for img in images[: args.unbatched_studies]:
        s = time.perf_counter()
        runner.predict(img[None], [ctx])
        lat.append((time.perf_counter() - s) * 1000)
    result["unbatched"] = stats(lat, time.perf_counter() - t0)
    loads = []
    for max_batch in args.max_batch:
        for clients in args.clients:
            row = closed_loop(runner, images[: args.studies], ctx, clients, max_batch, args.delay_ms)
            loads.append(row)
            print(json.dumps(row), flush=True)
    result["loads"] = loads
    limit_ms = args.p99_limit_s * 1000
    ok = [r for r in loads if r["p99_ms"] < limit_ms]
    best = max(ok, key=lambda r: r["studies_per_hour"]) if ok else None
    result["best_under_p99_limit"] = {"p99_limit_s": args.p99_limit_s, **(best or {"note": "no load met the limit"})}
    design = [r for r in ok if r["max_batch_size"] == 8]
    result["best_with_design_batching"] = max(design, key=lambda r: r["studies_per_hour"]) if design else None
    if device.startswith("cuda"):
        result["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["peak_host_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out = args.out or RESULTS / f"inference_torch_{result['device']['kind']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "loads"}, indent=2))
    return result


if __name__ == "__main__":
    main()
