"""DICOM Structured Reports of finished reports (highdicom): `build_report_sr` (the narrative, after
TID 2000), `build_measurement_report_sr` (TID 1500, IHE AI Results), and the codes they use."""

from libs.sr.builder import AI_NOTICE, SERIES_DESCRIPTION, ModelIdentity, build_report_sr, sr_uids
from libs.sr.measurement_report import build_measurement_report_sr, measurement_report_uids

__all__ = ["AI_NOTICE", "SERIES_DESCRIPTION", "ModelIdentity", "build_measurement_report_sr", "build_report_sr",
           "measurement_report_uids", "sr_uids"]
