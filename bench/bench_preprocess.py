"""Decode + preprocess time of a ~2k x 2k chest CR: the part of ingestion that is ours, per image.

Images: RG1 from pydicom-data (CR chest PA, 1955 x 1841, 15-bit MONOCHROME1) uncompressed and
as lossless JPEG 2000, plus the lossy JPEG 2000 sample that `make demo` runs on. The size is the
reference bundle's model input (224; `--size` to change it). Per repetition, side by side:
- full: `decode_pixels` (full-resolution decode + Modality/VOI LUT + inversion), then `preprocess`
  (resize + pad), what ingestion did before the reduced decode;
- reduced: what ingestion does now (libs.dicom.load.display_and_fit): a JPEG 2000 frame decoded with
  the wavelet levels the model input does not need discarded (libs.dicom.j2k_reduce), the display
  pipeline, then preprocess from the reduced image. Other syntaxes decode in full either way.
The decode and preprocess stages are timed separately, reading the file on its own.

Model inputs of both paths go through the reference bundle's encoder on CPU (BundleRunner): the
largest |probability difference| per label, over the chest JPEG 2000 images (and, reported apart,
the other real JPEG 2000 files of pydicom-data, which validation would reject but whose decode and
preprocess are the same code).

Goals on the 2-core dev machine: decode + preprocess median < 150 ms for the uncompressed image;
on the reduced path <= 60 ms for the lossless JPEG 2000 and <= 40 ms for the lossy one; no label's
probability moved by more than 0.01.

  python -m bench.bench_preprocess [--reps 30] [--size 224] [--bundle models/reference]
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
from libs.dicom.display import to_display
from libs.dicom.pixels import decode_frame

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "preprocess.json"
REFERENCE_BUNDLE = REPO_ROOT / "models" / "reference"
GOAL_MS = 150.0
# Reduced-resolution path (decode + preprocess median) per JPEG 2000 kind, and the probability budget.
GOAL_REDUCED_MS = {"RG1_J2KR.dcm": 60.0, "RG1_J2KI.dcm": 40.0}
GOAL_PROB_DIFF = 0.01
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
    """Both paths, alternating within each repetition (so drift on a shared machine hits both alike)."""
    read_ms: list[float] = []
    timings = {path_name: {"decode": [], "preprocess": [], "decode_plus_preprocess": []} for path_name in ("full", "reduced")}
    for i in range(WARMUP + reps):
        t0 = time.perf_counter()
        ds = read_dataset(path)
        t1 = time.perf_counter()
        order = ("full", "reduced") if i % 2 == 0 else ("reduced", "full")
        for path_name in order:
            t2 = time.perf_counter()
            if path_name == "full":
                img, levels = decode_pixels(ds), 0
            else:
                stored, levels = decode_frame(ds, min_side=size)
                img = to_display(stored, ds)
            t3 = time.perf_counter()
            if levels:
                pre = preprocess(img, size=size, source_shape=(int(ds.Rows), int(ds.Columns)), discarded_levels=levels)
            else:
                pre = preprocess(img, size=size)
            t4 = time.perf_counter()
            if i >= WARMUP:
                timings[path_name]["decode"].append((t3 - t2) * 1000)
                timings[path_name]["preprocess"].append((t4 - t3) * 1000)
                timings[path_name]["decode_plus_preprocess"].append((t4 - t2) * 1000)
            if path_name == "reduced":
                reduced_shape, reduced_levels = list(img.shape), levels
        if i >= WARMUP:
            read_ms.append((t1 - t0) * 1000)
    return {
        "file": path.name,
        "transfer_syntax": ds.file_meta.TransferSyntaxUID.name,
        "source_shape": [int(ds.Rows), int(ds.Columns)],
        "model_shape": list(pre.array.shape),
        "read": _stats(read_ms),
        # the keys of earlier runs: the full-resolution path
        **{stage: _stats(ms) for stage, ms in timings["full"].items()},
        "reduced": {
            "discarded_levels": reduced_levels,
            "decoded_shape": reduced_shape,
            **{stage: _stats(ms) for stage, ms in timings["reduced"].items()},
        },
    }


def _j2k_test_images() -> dict[str, list[Path]]:
    data = _images()["RG1_UNCR (uncompressed)"].parent
    chest = [data / "RG1_J2KR.dcm", REPO_ROOT / "samples" / "chest_pa" / "RG1_J2KI.dcm"]
    other = [data / f"{name}.dcm" for name in ("RG3_J2KR", "RG3_J2KI", "MR2_J2KR", "MR2_J2KI", "693_J2KR")]
    return {"chest": chest, "other": [p for p in other if p.is_file()]}


def _probability_differences(bundle: Path) -> dict:
    """|p_reduced - p_full| per label, both model inputs through the bundle's encoder on CPU."""
    from libs.bundle.contract import OUTPUT_PROBABILITIES
    from libs.bundle.runner import BundleRunner
    from libs.dicom.load import display_and_fit
    from libs.domain.labels import CHEXPERT_LABELS

    runner = BundleRunner(bundle, providers=["CPUExecutionProvider"])
    size = runner.image_size
    out: dict = {"bundle": f"{runner.model_name} {runner.model_version}", "size": size, "providers": runner.providers,
                 "images": {}}
    for group, paths in _j2k_test_images().items():
        worst = np.zeros(len(CHEXPERT_LABELS))
        for path in paths:
            ds = read_dataset(path)
            full = display_and_fit(ds, size, reduced=False).array
            reduced = display_and_fit(ds, size).array
            levels = decode_frame(ds, min_side=size)[1]
            # The runner's own normalisation, then the raw encoder outputs: every label, assessed or not.
            probs = runner._run(runner._prepare(np.stack([full, reduced])), [OUTPUT_PROBABILITIES])[OUTPUT_PROBABILITIES]  # noqa: SLF001
            diff = np.abs(probs[0].astype(np.float64) - probs[1])
            worst = np.maximum(worst, diff)
            out["images"][path.name] = {
                "group": group,
                "discarded_levels": levels,
                "max_abs_diff": round(float(diff.max()), 5),
                "label_of_max": CHEXPERT_LABELS[int(diff.argmax())],
                "model_input_mean_abs_diff": round(float(np.abs(full - reduced).mean()), 5),
                "pneumonia_full": round(float(probs[0][CHEXPERT_LABELS.index("Pneumonia")]), 4),
                "pneumonia_reduced": round(float(probs[1][CHEXPERT_LABELS.index("Pneumonia")]), 4),
            }
        out[f"max_abs_diff_per_label_{group}"] = {label: round(float(v), 5) for label, v in zip(CHEXPERT_LABELS, worst)}
    return out


def _bundle_size(bundle: Path) -> int | None:
    try:
        from libs.bundle.manifest import load_manifest

        return load_manifest(bundle).input.size
    except Exception:  # noqa: BLE001 - no bundle: the caller says so
        return None


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
    parser.add_argument("--size", type=int, default=None, help="model input side (default: the bundle's, else 512)")
    parser.add_argument("--bundle", type=Path, default=REFERENCE_BUNDLE, help="bundle for the probability comparison")
    args = parser.parse_args(argv if argv is not None else [])
    size = args.size or _bundle_size(args.bundle) or 512

    results = []
    for label, path in _images().items():
        r = _measure(path, max(args.reps, 20), size)
        r["label"] = label
        results.append(r)
        red = r["reduced"]
        print(f"{label}: {r['source_shape'][0]}x{r['source_shape'][1]} -> {size} "
              f"(reduced path: {red['discarded_levels']} level(s) discarded, decoded {red['decoded_shape'][0]}x{red['decoded_shape'][1]})")
        print(f"  {'read':32s} median {r['read']['median_ms']:7.1f} ms   p95 {r['read']['p95_ms']:7.1f} ms   (n={r['read']['n']})")
        for stage in ("decode", "preprocess", "decode_plus_preprocess"):
            for path_name, st in (("full", r[stage]), ("reduced", red[stage])):
                print(f"  {stage + ' (' + path_name + ')':32s} median {st['median_ms']:7.1f} ms   p95 {st['p95_ms']:7.1f} ms   (n={st['n']})")

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
    for r in results:
        if r["file"] in GOAL_REDUCED_MS:
            goal, full_ms = GOAL_REDUCED_MS[r["file"]], r["decode_plus_preprocess"]["median_ms"]
            got = r["reduced"]["decode_plus_preprocess"]["median_ms"]
            summary[f"{r['file']}_reduced"] = {
                "goal": f"reduced-path decode + preprocess median <= {goal:.0f} ms", "median_ms": got,
                "full_resolution_median_ms": full_ms, "speedup": round(full_ms / got, 1), "goal_met": got <= goal,
            }
            print(f"{r['file']} reduced path: {got} ms (full {full_ms} ms, {full_ms / got:.1f}x): goal <= {goal:.0f} ms "
                  f"{'met' if got <= goal else 'NOT met'}")

    probs = None
    if _bundle_size(args.bundle) is None:
        print(f"no bundle at {args.bundle}: probability differences not measured")
    elif _bundle_size(args.bundle) != size:
        print(f"--size {size} is not the bundle's input size: probability differences not measured")
    else:
        probs = _probability_differences(args.bundle)
        chest = probs["max_abs_diff_per_label_chest"]
        worst = max(chest.values())
        summary["probability_difference"] = {
            "goal": f"max |p_reduced - p_full| <= {GOAL_PROB_DIFF} for every label, chest JPEG 2000 images",
            "max_abs_diff": worst, "goal_met": worst <= GOAL_PROB_DIFF,
            "max_abs_diff_other_images": max(probs.get("max_abs_diff_per_label_other", {"-": 0.0}).values()),
        }
        for name, info in probs["images"].items():
            print(f"  {name} ({info['group']}, {info['discarded_levels']} level(s) discarded): max |dp| "
                  f"{info['max_abs_diff']} ({info['label_of_max']}); Pneumonia {info['pneumonia_full']} -> {info['pneumonia_reduced']}")
        print("  max |dp| per label, chest images: " + ", ".join(f"{k} {v}" for k, v in chest.items()))
        print(f"probability goal (<= {GOAL_PROB_DIFF}): {'met' if worst <= GOAL_PROB_DIFF else 'NOT met'} ({worst})")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "bench.bench_preprocess",
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.machine()},
                "versions": _versions(),
                "size": size,
                "warmup": WARMUP,
                "images": results,
                "jpeg2000_decode_by_plugin_median_ms": j2k,
                "probabilities_reduced_vs_full": probs,
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
