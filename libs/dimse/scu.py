"""The C-STORE SCU: report SRs to a PACS that has no DICOMweb (settings.dimse_destinations).

One association per SR; a failed association (refused, unreachable, timed out, aborted) is tried
again `retries` times with a doubling delay. A C-STORE status other than success or warning is the
PACS's answer and is not retried here: the results store-back records it, and the reconciler tries
the whole store-back again later, up to CXR_RESULTS_MAX_ATTEMPTS (docs/reliability.md).
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from libs.core.config import DimseDestination
from libs.core.retry import attempts
from libs.dicomweb.client import PacsUnavailable

log = logging.getLogger(__name__)

_WARNING = (0x0001, 0xB000, 0xB006, 0xB007)  # PS3.4 B.2.3: stored, with a warning


def cstore(dest: DimseDestination, ds: Dataset, calling_ae_title: str) -> str:
    """Sends one instance; returns a short detail line or raises PacsUnavailable with the reason."""
    last = "no attempt"
    for attempt in attempts(dest.retries, dest.backoff_s):
        ae = AE(ae_title=dest.calling_ae_title or calling_ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
        ae.connection_timeout = dest.timeout_s
        ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            last = "association rejected" if assoc.is_rejected else "association aborted or unreachable"
            log.warning("C-STORE to %s (%s@%s:%d): %s (attempt %d)", dest.name, dest.ae_title, dest.host, dest.port,
                        last, attempt + 1)
            continue
        try:
            status = assoc.send_c_store(ds)
        finally:
            if assoc.is_established:
                assoc.release()
        if not status or "Status" not in status:
            last = "no C-STORE response (association aborted, or the DIMSE timeout)"
            continue
        code = int(status.Status)
        if code == 0x0000:
            return "stored (C-STORE)"
        if code in _WARNING:
            return f"stored (C-STORE warning 0x{code:04X})"
        raise PacsUnavailable(f"PACS {dest.name!r} refused the report SR (C-STORE status 0x{code:04X})")
    raise PacsUnavailable(f"PACS {dest.name!r} ({dest.ae_title}@{dest.host}:{dest.port}): {last}")
