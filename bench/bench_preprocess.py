"""Decode + preprocess time of a ~2k x 2k chest CR: the part of ingestion that is ours, per image.

Images: RG1 from pydicom-data (CR chest PA, 1955 x 1841, 15-bit MONOCHROME1) uncompressed and
as lossless JPEG 2000, plus the lossy JPEG 2000 sample that `make demo` runs on. Each is read
once; then, per repetition, `decode_pixels` (decode + Modality/VOI LUT + inversion) and
`preprocess` (resize to 512 + pad) are timed separately. Reading the file is timed on its own.

Goal: decode + preprocess median < 150 ms for the uncompressed image on the 2-core dev machine.
JPEG 2000 decode is dominated by the codec (gdcm / OpenJPEG) and is reported as measured.

  python -m bench.bench_preprocess [--reps 30] [--size 512]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from libs.dicom import decode_pixels, preprocess, read_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "preprocess.json"
GOAL_MS = 150.0
WARMUP = 2


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "median_ms": round(float(np.median(a)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "mean_ms": round(float(a.mean()), 1),
        "min_ms": round(float(a.min()), 1),
    }


def _images() -> dict[str, Path]:
    spec = importlib.util.find_spec("data_store")  # pydicom-data
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pydicom-data is not installed: pip install pydicom-data")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return {
        "RG1_UNCR (uncompressed)": data / "RG1_UNCR.dcm",
        "RG1_J2KR (JPEG 2000 lossless)": data / "RG1_J2KR.dcm",
        "RG1_J2KI (JPEG 2000 lossy, samples/chest_pa)": REPO_ROOT / "samples" / "chest_pa" / "RG1_J2KI.dcm",
    }


def _measure(path: Path, reps: int, size: int) -> dict:
    read_ms, decode_ms, prep_ms, both_ms = [], [], [], []
    for i in range(WARMUP + reps):
        t0 = time.perf_counter()
        ds = read_dataset(path)
        t1 = time.perf_counter()
        img = decode_pixels(ds)
        t2 = time.perf_counter()
        pre = preprocess(img, size=size)
        t3 = time.perf_counter()
        if i < WARMUP:
            continue
        read_ms.append((t1 - t0) * 1000)
        decode_ms.append((t2 - t1) * 1000)
        prep_ms.append((t3 - t2) * 1000)
        both_ms.append((t3 - t1) * 1000)
    return {
        "file": path.name,
        "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
        "source_shape": list(img.shape),
        "model_shape": list(pre.array.shape),
        "read": _stats(read_ms),
        "decode": _stats(decode_ms),
        "preprocess": _stats(prep_ms),
        "decode_plus_preprocess": _stats(both_ms),
    }


def _j2k_plugins(paths: list[Path], reps: int = 5) -> dict[str, dict[str, float]]:
    """Stored-value decode time per installed JPEG 2000 plugin (pydicom's default tries gdcm first)."""
    from pydicom.pixels import get_decoder

    out: dict[str, dict[str, float]] = {}
    for path in paths:
        ds = read_dataset(path)
        decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
        timings = {}
        for plugin in decoder.available_plugins:
            ms = []
            for _ in range(reps):
                t0 = time.perf_counter()
                decoder.as_array(ds, index=0, decoding_plugin=plugin, as_rgb=False)
                ms.append((time.perf_counter() - t0) * 1000)
            timings[plugin] = round(float(np.median(ms)), 1)
        out[path.name] = timings
    return out


def _versions() -> dict[str, str]:
    import PIL
    import pydicom

    out = {"python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
           "pydicom": pydicom.__version__}
    for dist in ("python-gdcm", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "pyjpegls"):
        try:
            from importlib.metadata import version

            out[dist] = version(dist)
        except Exception:  # noqa: BLE001 - optional plugin not installed
            out[dist] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions per image (>= 20)")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv if argv is not None else [])

    results = []
    for label, path in _images().items():
        r = _measure(path, max(args.reps, 20), args.size)
        r["label"] = label
        results.append(r)
        print(f"{label}: {r['source_shape'][0]}x{r['source_shape'][1]} -> {args.size}")
        for stage in ("read", "decode", "preprocess", "decode_plus_preprocess"):
            s = r[stage]
            print(f"  {stage:24s} median {s['median_ms']:7.1f} ms   p95 {s['p95_ms']:7.1f} ms   (n={s['n']})")

    j2k = _j2k_plugins([p for p in _images().values() if "J2K" in p.name])
    for name, timings in j2k.items():
        print(f"{name} stored-value decode by plugin (median of 5): " + ", ".join(f"{k} {v} ms" for k, v in timings.items()))

    unc = results[0]["decode_plus_preprocess"]["median_ms"]
    summary = {
        "goal": f"decode + preprocess median < {GOAL_MS:.0f} ms for the uncompressed 1955x1841 CR",
        "uncompressed_decode_plus_preprocess_median_ms": unc,
        "goal_met": unc < GOAL_MS,
    }
    print(f"goal ({summary['goal']}): {'met' if summary['goal_met'] else 'NOT met'} ({unc} ms)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "bench.bench_preprocess",
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.machine()},
                "versions": _versions(),
                "size": args.size,
                "warmup": WARMUP,
                "images": results,
                "jpeg2000_decode_by_plugin_median_ms": j2k,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
