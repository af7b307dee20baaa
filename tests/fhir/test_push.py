"""The FHIR push client against a stub FHIR server on 127.0.0.1: retries, idempotent PUTs, rejections."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from libs.core.config import Settings
from libs.fhir.builder import build_resources
from libs.fhir.push import FhirPushClient, PushError, PushFailed, PushRejected, push_job
from libs.storage.db import get_engine, upgrade_schema
from tests.fhir.helpers import seed_reviewed_job
from tests.fhir.test_resources import source
from tests.reporting.helpers import model_output


class StubFhirServer:
    """Answers POST [base] with the next scripted (status, body, headers); records what it received."""

    def __init__(self, script: list[tuple[int, dict | None, dict[str, str]]]) -> None:
        self.script = list(script)
        self.received: list[dict] = []
        self.content_types: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.received.append(json.loads(body))
                stub.content_types.append(self.headers.get("Content-Type", ""))
                status, payload, headers = stub.script.pop(0) if stub.script else (200, None, {})
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StubFhirServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def transaction_response(n: int) -> dict:
    return {"resourceType": "Bundle", "type": "transaction-response",
            "entry": [{"response": {"status": "200 OK"}} for _ in range(n)]}


def outcome(text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}]}


@pytest.fixture
def resources():  # noqa: ANN201
    return build_resources(source())


def test_push_retries_transient_failures_then_succeeds(resources) -> None:  # noqa: ANN001
    sleeps: list[float] = []
    script = [(503, outcome("busy"), {}), (429, None, {"Retry-After": "2"}), (200, transaction_response(5), {})]
    with StubFhirServer(script) as stub, FhirPushClient(stub.url, retries=3, backoff_s=0.5, sleep=sleeps.append) as c:
        result = c.push(resources)
    assert (result.status, result.attempts) == (200, 3)
    assert result.response["type"] == "transaction-response"
    assert sleeps == [0.5, 2.0]  # exponential backoff, then the server's Retry-After
    assert len(stub.received) == 3 and stub.received[0] == stub.received[2]  # the same bundle each time
    assert stub.content_types[0] == "application/fhir+json"
    bundle = stub.received[0]
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert {e["request"]["method"] for e in bundle["entry"]} == {"PUT"}  # a repeat updates, never duplicates
    # an Observation per assessed observation, positives or not
    n = len(bundle["entry"]) - 3
    assert n >= 12 and [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "Device", *["Observation"] * n, "DiagnosticReport", "Provenance"]
    assert bundle["entry"][-2]["resource"]["status"] == "preliminary"


def test_push_rejection_is_not_retried(resources) -> None:  # noqa: ANN001
    with StubFhirServer([(400, outcome("Observation.code: unknown system"), {})]) as stub, \
            FhirPushClient(stub.url, retries=3, sleep=lambda s: None) as c:
        with pytest.raises(PushRejected) as err:
            c.push(resources)
    assert err.value.status == 400 and "unknown system" in err.value.detail
    assert len(stub.received) == 1


def test_push_gives_up_after_the_retries(resources) -> None:  # noqa: ANN001
    with StubFhirServer([(500, None, {})] * 3) as stub, FhirPushClient(stub.url, retries=2, sleep=lambda s: None) as c:
        with pytest.raises(PushFailed) as err:
            c.push(resources)
    assert err.value.attempts == 3 and "HTTP 500" in err.value.last
    assert len(stub.received) == 3


def test_push_to_a_closed_port_fails_after_retries(resources) -> None:  # noqa: ANN001
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    with FhirPushClient(f"http://127.0.0.1:{port}/fhir", retries=2, backoff_s=0.1, sleep=sleeps.append) as c:
        with pytest.raises(PushFailed, match="ConnectError"):
            c.push(resources)
    assert sleeps == [0.1, 0.2]


def test_push_job_reads_the_job_and_uses_the_configured_server(tmp_path) -> None:  # noqa: ANN001
    with StubFhirServer([(200, transaction_response(3), {})]) as stub:
        settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'cxr.db'}",
                            fhir_push_url=stub.url, fhir_push_retries=0)
        engine = get_engine(settings.sqlalchemy_url)
        upgrade_schema(engine)
        job_id, _, _ = seed_reviewed_job(engine, model_output({"Edema": 0.9}))
        result = push_job(job_id, settings)
    assert result.status == 200
    ids = [e["resource"]["id"] for e in stub.received[0]["entry"]]
    assert f"rpt-{job_id}" in ids
    with pytest.raises(PushError, match="no job"):
        push_job("00000000-0000-0000-0000-000000000000", settings)
    with pytest.raises(PushError, match="CXR_FHIR_PUSH_URL"):
        push_job(job_id, settings.model_copy(update={"fhir_destinations": []}))
    with pytest.raises(PushError, match="no FHIR destination named 'other'"):
        push_job(job_id, settings, destination="other")


def test_push_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        FhirPushClient("ftp://example.org/fhir")
