"""DICOM Structured Reports of finished reports (highdicom): `build_report_sr`, and the codes it uses."""

from libs.sr.builder import AI_NOTICE, SERIES_DESCRIPTION, ModelIdentity, build_report_sr, sr_uids

__all__ = ["AI_NOTICE", "SERIES_DESCRIPTION", "ModelIdentity", "build_report_sr", "sr_uids"]
