"""Turning a ModelOutput into the words of a report (and, later, FHIR and DICOM SR)."""
