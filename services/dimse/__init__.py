"""The DICOM DIMSE service: a C-STORE / C-ECHO SCP (libs/dimse/scp.py)."""
