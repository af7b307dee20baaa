"""Which onnxruntime execution providers a bundle runs on."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from libs.core.errors import BundleUnavailable

log = logging.getLogger(__name__)

# Fastest first. CPU is last so that a machine without a GPU (or without TensorRT) still runs,
# and onnxruntime assigns any node a GPU provider cannot run to the next provider in the list.
PREFERRED_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


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
