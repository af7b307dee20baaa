"""No patient identifier leaves the DICOM files: studies carrying distinctive PHI go through the real
gateway and four workers; every log line, the /metrics outputs, every Redis command seen during the
run, the REST and FHIR answers, error details and the audit trail are searched for the values."""

from __future__ import annotations

import threading

import httpx
import pydicom
import redis
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text

from tests.integration.conftest import SERVICES, Platform, free_port
from tests.integration.test_workers import stow

# Distinctive values, and the forms they could be rendered in (a date reformatted, a name split).
NAME, MRN, BIRTH, ACCESSION = "Quuxwell^Zebediah", "MRN88442211", "19240317", "ACCQ7731905"
NEEDLES = ["Quuxwell", "Zebediah", MRN, "88442211", BIRTH, "1924-03-17", "17.03.1924", ACCESSION, "7731905"]


def _with_phi(dicom: bytes, **overrides: str) -> bytes:
    import io

    ds = pydicom.dcmread(io.BytesIO(dicom))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = NAME, MRN, BIRTH, ACCESSION
    for k, v in overrides.items():
        setattr(ds, k, v)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class RedisRecorder:
    """Every command the Redis server executes while the test runs (MONITOR), as text."""

    def __init__(self, url: str) -> None:
        # MONITOR waits as long as the platform is quiet (its start-up): redis-py 8 reads with a 5 s timeout
        # by default, which would end the recording before the first study.
        self.client = redis.Redis.from_url(url, socket_timeout=None)
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as m:
            for command in m.listen():
                self.lines.append(str(command.get("command", "")))
                if self._stop.is_set():
                    return

    def start(self) -> "RedisRecorder":
        self._thread.start()
        return self

    def stop(self) -> str:
        self._stop.set()
        self.client.ping()  # one more command so listen() returns
        self._thread.join(timeout=10)
        return "\n".join(self.lines)


def _hits(where: str, haystack: str) -> list[str]:
    return [f"{where}: {n!r}" for n in NEEDLES if n.lower() in haystack.lower()]


def test_phi_leaves_no_trace(platform: Platform, chest_dicom) -> None:  # noqa: ANN001
    recorder = RedisRecorder(platform.env["REDIS_URL"]).start()
    metrics_port = free_port()
    for svc in SERVICES:
        platform.start(svc, **({"CXR_METRICS_PORT": str(metrics_port)} if svc == "inference" else {}))
    platform.start("gateway", CXR_LOG_LEVEL="DEBUG")
    platform.wait_ready()
    api = httpx.Client(base_url=platform.base_url, headers=platform.headers, timeout=120)
    answers: list[str] = []

    study_uid, dicom = chest_dicom()
    assert stow(platform.base_url, _with_phi(dicom), platform.headers).status_code == 200
    # rejected instances: another modality, and another study than the URL names (their errors too)
    bad = _with_phi(dicom, Modality="MR", SOPInstanceUID=generate_uid())
    answers.append(stow(platform.base_url, bad, platform.headers).text)
    boundary = "b0"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + _with_phi(dicom) + f"\r\n--{boundary}--\r\n".encode()
    r = api.post(f"/dicomweb/studies/{generate_uid()}", content=body,
                 headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    answers.append(r.text + str(r.headers))
    posted = api.post(f"/api/v1/studies/{study_uid}/report",
                      json={"clinical_context": {"age": 67, "sex": "M", "indication": "Cough"}})
    assert posted.status_code == 202
    got = api.get(f"/api/v1/studies/{study_uid}/report", params={"wait": 90})
    assert got.json()["status"] == "reviewed", platform.logs()
    answers.append(got.text)
    report_id = got.json()["report_id"]
    for path in (f"/fhir/DiagnosticReport/{report_id}", f"/fhir/DiagnosticReport?imaging-study={study_uid}&_include=DiagnosticReport:result",
                 f"/fhir/Provenance/{report_id}-prov", "/fhir/AuditEvent?_count=200", f"/api/v1/jobs/{posted.json()['job_id']}"):
        answers.append(api.get(path).text)
    metrics = api.get("/metrics").text + httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    redis_text = recorder.stop()
    engine = create_engine(platform.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        audit = "\n".join(str(tuple(r)) for r in conn.execute(text("SELECT * FROM audit_events")))
        jobs = "\n".join(str(tuple(r)) for r in conn.execute(text("SELECT request, report, error, model_output FROM jobs")))
    engine.dispose()
    logs = "\n".join(p.read_text(errors="replace") for p in platform.log_dir.glob("*.log"))

    assert len(redis_text) > 1000 and "cxr." in redis_text  # the recorder did see the queue traffic
    assert "DEBUG" in logs  # and the gateway logged verbosely
    hits = (_hits("logs", logs) + _hits("metrics", metrics) + _hits("redis", redis_text) + _hits("audit", audit)
            + _hits("job rows", jobs) + _hits("answers", "\n".join(answers)))
    assert hits == []
