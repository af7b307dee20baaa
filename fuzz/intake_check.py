"""One input through the DICOM intake, with the contract checked: accepted, or InputRejected.

`check(data)` calls what `libs.pipeline.intake.accept_instance` calls before it touches the
database (its header-only image size check where intake.py has one, read_dataset ->
validate_dataset -> check_pixel_data (complete, not decoded) -> instance_from_dataset -> check_uid
on the three UIDs), and for an accepted input also what the ingest step later does with the stored
file (libs.dicom.load.display_and_fit: the one decode, display pipeline, preprocess), so the
decoders and the display pipeline are fuzzed too. A JPEG 2000 input is fitted a second time, to
REDUCED_FIT_SIZE, small enough that its reduced-resolution decode (libs.dicom.j2k_reduce) runs.

Anything that is not a clean acceptance or an InputRejected raises, and the fuzzer counts it as
a crash: another exception type (the pipeline would retry the job as if it were transient), a
rejection reason that is not one short PHI-free line, or an accepted image that breaks the
display contract (float32, 2-D, Rows x Columns, finite, within [0, 1]).

No atheris here: tests/fuzz imports this without it. fuzz/fuzz_intake.py imports it under
atheris's instrumentation.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np

from libs.core.errors import InputRejected
from libs.dicom import instance_from_dataset, read_dataset, validate_dataset
from libs.dicom.load import display_and_fit
from libs.dicom.pixels import check_pixel_data
from libs.dicom.validate import max_image_pixels
from libs.pipeline import intake
from libs.pipeline.intake import check_uid

# accept_instance's header-only image size check, where this checkout's intake.py has it (it
# reads the header before the full parse); the harness follows it so that it fuzzes that too.
_header_only = getattr(intake, "_header_only", None)
_check_image_size = getattr(intake, "check_image_size", None)

# Stands in for patient details in the seeds (fuzz/seeds.py); kept here so that the check does
# not import the seed builders (and their encoders) into the fuzzed process.
PHI_MARKER = "phimarker"
# A reason is shown to users and written to logs: one line, short.
MAX_REASON_CHARS = 400
# Model input side for the preprocess step; small, the geometry code is the same at any size.
FIT_SIZE = 64
# The seeds are 48x40: fitted to 8, their JPEG 2000 streams are decoded with one level discarded.
REDUCED_FIT_SIZE = 8
# Coded values quoted by libs.dicom._attrs.shown (Modality, BodyPartExamined...): by design a
# reason may repeat them, so a marker the fuzzer copied into one of them is not a leak.
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_JPEG2000 = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})


class ContractViolation(AssertionError):
    """The input was handled, but not the way the intake contract says."""


def quiet() -> None:
    """Malformed input makes pydicom and the display code log and warn on nearly every call."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def check(data: bytes) -> str:
    """'accepted', 'rejected' (at intake) or 'rejected-at-display'; raises on a contract violation."""
    try:
        if _check_image_size is not None:
            limit = max_image_pixels()
            header = _header_only(data) if _header_only is not None else None
            if header is not None:
                _check_image_size(header, limit)
        ds = read_dataset(data)
        if _check_image_size is not None:
            _check_image_size(ds, limit)
        validate_dataset(ds)
        check_pixel_data(ds)  # what intake checks instead of decoding
        instance = instance_from_dataset(ds)
        for uid, what in (
            (instance.study_uid, "StudyInstanceUID"),
            (instance.series_uid, "SeriesInstanceUID"),
            (instance.sop_instance_uid, "SOPInstanceUID"),
        ):
            check_uid(uid, what)
    except InputRejected as exc:
        check_reason(exc)
        return "rejected"

    try:
        fitted = display_and_fit(ds, FIT_SIZE)
        check_fitted(fitted, instance.rows, instance.columns)
        if instance.transfer_syntax_uid in _JPEG2000:
            check_fitted(display_and_fit(ds, REDUCED_FIT_SIZE), instance.rows, instance.columns, REDUCED_FIT_SIZE)
    except InputRejected as exc:
        # Allowed (corrupt coded data and a blank image are only found here): the job fails at ingestion.
        check_reason(exc)
        return "rejected-at-display"
    return "accepted"


def check_reason(exc: InputRejected) -> None:
    reason = exc.reason
    if not isinstance(reason, str) or not reason.strip():
        raise ContractViolation(f"InputRejected without a reason: {reason!r}")
    if "\n" in reason or "\r" in reason or len(reason) > MAX_REASON_CHARS:
        raise ContractViolation(f"InputRejected reason is not one short line ({len(reason)} chars)")
    if PHI_MARKER in _QUOTED.sub("", reason).lower():
        raise ContractViolation("InputRejected reason repeats a patient attribute")


def check_fitted(fitted, rows: int | None, cols: int | None, size: int = FIT_SIZE) -> None:  # noqa: ANN001
    image = fitted.array
    if image.dtype != np.float32 or image.shape != (size, size):
        raise ContractViolation(f"model input is {image.dtype} {image.shape}, expected float32 {size}x{size}")
    if not np.isfinite(image).all():
        raise ContractViolation("model input has NaN or infinite values")
    if float(image.min()) < -1e-3 or float(image.max()) > 1.0 + 1e-3:
        raise ContractViolation(f"model input outside [0, 1]: {float(image.min())}..{float(image.max())}")
    g = fitted.geometry
    if (g.source_rows, g.source_cols) != (rows, cols):
        raise ContractViolation(f"geometry says {g.source_rows}x{g.source_cols}, header {rows}x{cols}")
