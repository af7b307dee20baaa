"""Fuzzing of the DICOM intake path (see docs/fuzzing.md). `make fuzz` runs it."""
