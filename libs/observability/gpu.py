"""GPU use and memory through NVML (nvidia-ml-py), for the process that runs the model.

Registered only when NVML starts (a driver and at least one GPU): on a CPU-only host the series are
absent, not zero, so a dashboard shows "no GPU" rather than an idle one. Labels: the GPU's index and
model name only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class GpuCollector(Collector):
    def __init__(self, nvml) -> None:  # noqa: ANN001 - the pynvml module (initialised)
        self.nvml = nvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self.nvml
        util = GaugeMetricFamily("cxr_gpu_utilization_ratio", "GPU busy share over the last sample period (NVML)",
                                 labels=["gpu", "name"])
        used = GaugeMetricFamily("cxr_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu", "name"])
        total = GaugeMetricFamily("cxr_gpu_memory_total_bytes", "GPU memory (NVML)", labels=["gpu", "name"])
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                name = nvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                util.add_metric([str(i), name], rates.gpu / 100.0)
                used.add_metric([str(i), name], float(memory.used))
                total.add_metric([str(i), name], float(memory.total))
        except Exception as exc:  # noqa: BLE001 - a GPU that fell off the bus: report what was read
            log.warning("NVML read failed: %s", exc)
        yield util
        yield used
        yield total


def register_gpu_metrics(registry: CollectorRegistry = REGISTRY, nvml=None) -> bool:  # noqa: ANN001
    """True when NVML started and the GPU series are registered; False (and nothing registered) otherwise."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return False
    try:
        nvml.nvmlInit()
        if nvml.nvmlDeviceGetCount() < 1:
            return False
    except Exception as exc:  # noqa: BLE001 - no driver, no GPU: no GPU series
        log.info("no GPU metrics: %s", exc)
        return False
    registry.register(GpuCollector(nvml))
    return True
