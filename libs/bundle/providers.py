"""Which onnxruntime execution providers a bundle runs on."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from libs.core.errors import BundleUnavailable

log = logging.getLogger(__name__)

# Fastest first. CPU is last so that a machine without a GPU (or without TensorRT) still runs,
# and onnxruntime assigns any node a GPU provider cannot run to the next provider in the list.
PREFERRED_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def first_line(exc: BaseException) -> str:
    """An exception's first message line (onnxruntime's are long and multi-line), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """The providers to ask onnxruntime for, in priority order.

    `available` is what `onnxruntime.get_available_providers()` reports for the installed build.
    `requested` (an operator's explicit choice) defaults to PREFERRED_PROVIDERS; entries that are
    not installed are dropped with a warning rather than failing, so one configuration works on
    GPU and CPU hosts. Raises BundleUnavailable when nothing requested is installed.
    """
    wanted = list(PREFERRED_PROVIDERS if requested is None else requested)
    chosen = [p for p in dict.fromkeys(wanted) if p in available]
    missing = [p for p in wanted if p not in available]
    if requested is not None and missing:
        log.warning("requested execution provider(s) not installed, skipped: %s", ", ".join(missing))
    if not chosen:
        raise BundleUnavailable(
            f"none of the execution providers {', '.join(wanted) or '(none)'} is installed "
            f"(available: {', '.join(available) or 'none'})"
        )
    return chosen


TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# onnxruntime's own calibration table (onnxruntime.quantization write_calibration_table), for bundles
# whose graph is NOT already quantised with Q/DQ nodes; a QDQ graph carries its scales and must not get one.
CALIBRATION_TABLE = "calibration.flatbuffers"


def provider_options(providers: Sequence[str], cache_dir: Path | None = None, bundle_dir: Path | None = None,
                     device_id: int = 0) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) pairs for onnxruntime.InferenceSession.

    TensorRT: engines and timing data cached under `cache_dir/tensorrt` (building an engine takes
    minutes; the cache makes restarts fast and is keyed by the graph, so a new bundle builds anew), FP16
    and INT8 kernels allowed; a bundle that ships `calibration.flatbuffers` has it used as the INT8
    calibration table. CUDA: the device. Others: no options.
    """
    out: list[tuple[str, dict[str, str]]] = []
    for name in providers:
        opts: dict[str, str] = {}
        if name == TENSORRT:
            opts = {"device_id": str(device_id), "trt_fp16_enable": "True", "trt_int8_enable": "True"}
            if cache_dir is not None:
                trt_dir = Path(cache_dir) / "tensorrt"
                trt_dir.mkdir(parents=True, exist_ok=True)
                opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(trt_dir),
                            trt_timing_cache_enable="True", trt_timing_cache_path=str(trt_dir))
                table = Path(bundle_dir) / CALIBRATION_TABLE if bundle_dir is not None else None
                if table is not None and table.is_file():
                    # onnxruntime reads the table by name from the engine cache folder
                    shutil.copy2(table, trt_dir / CALIBRATION_TABLE)
                    opts["trt_int8_calibration_table_name"] = CALIBRATION_TABLE
        elif name == CUDA:
            opts = {"device_id": str(device_id)}
        out.append((name, opts))
    return out


def create_session(path: Path, providers: Sequence[str], session_options=None, *, cache_dir: Path | None = None,
                   bundle_dir: Path | None = None):
    """An onnxruntime session on `providers` (with provider_options). When a GPU provider is installed
    but cannot start (driver, CUDA or TensorRT libraries missing or of the wrong version at run time),
    it is logged and dropped, and the next provider in the list is tried: TensorRT -> CUDA -> CPU,
    rather than failing the service. Only the last provider's failure is raised."""
    import onnxruntime as ort

    remaining = list(providers)
    while True:
        try:
            return ort.InferenceSession(str(path), sess_options=session_options,
                                        providers=provider_options(remaining, cache_dir, bundle_dir))
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            if len(remaining) <= 1:
                raise
            log.error("execution provider %s failed to start for %s (%s); trying %s", remaining[0], path.name,
                      first_line(exc), ", ".join(remaining[1:]))
            remaining = remaining[1:]
