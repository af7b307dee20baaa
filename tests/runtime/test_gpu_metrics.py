"""GPU series through NVML: present with a GPU, absent (not zero) without one."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from libs.observability.gpu import register_gpu_metrics


class FakeNvml:
    """The slice of pynvml the collector calls, for one 80 GB GPU at 37 % use."""

    def nvmlInit(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, handle: int) -> bytes:  # noqa: N802
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(used=10 * 2**30, total=80 * 2**30, free=70 * 2**30)


def test_a_gpu_gives_use_and_memory_series() -> None:
    registry = CollectorRegistry()
    assert register_gpu_metrics(registry, FakeNvml()) is True
    text = generate_latest(registry).decode()
    assert 'cxr_gpu_utilization_ratio{gpu="0",name="NVIDIA H100 80GB HBM3"} 0.37' in text
    assert 'cxr_gpu_memory_used_bytes{gpu="0",name="NVIDIA H100 80GB HBM3"} 1.073741824e+10' in text
    assert 'cxr_gpu_memory_total_bytes{gpu="0",name="NVIDIA H100 80GB HBM3"} 8.589934592e+10' in text


def test_without_a_driver_there_are_no_gpu_series() -> None:
    class NoDriver(FakeNvml):
        def nvmlInit(self) -> None:  # noqa: N802
            raise OSError("NVML Shared Library Not Found")

    registry = CollectorRegistry()
    assert register_gpu_metrics(registry, NoDriver()) is False
    assert "cxr_gpu" not in generate_latest(registry).decode()
    # and on this machine, with the real library: no GPU here, nothing registered (a GPU host: registered)
    real = CollectorRegistry()
    has_gpu = register_gpu_metrics(real)
    assert ("cxr_gpu_memory_total_bytes" in generate_latest(real).decode()) is has_gpu
