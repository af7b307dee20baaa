"""PACS integration over DICOMweb (docs/pacs.md).

- `client`: sessions (auth, timeouts, retries with backoff) and dicomweb-client clients per PACS;
- `pull`: QIDO-RS + WADO-RS fetch of a study into local storage, all or nothing;
- `results`: the finished report stored back as a DICOM SR with STOW-RS, outcome on the job;
- `stable`: the watcher that starts a job for a pushed study once no instance arrived for a while.
"""
