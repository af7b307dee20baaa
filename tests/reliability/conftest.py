"""Reliability tests: the platform's processes against real Redis and PostgreSQL, with faults injected.

Reuses the integration fixtures (tests/integration/conftest.py: a database per test, worker and
gateway subprocesses) and adds what faults need: a private redis-server that a test can kill and
restart (its messages are gone, as after a real restart without persistence), a TCP proxy in front of
PostgreSQL that a test can cut, and a refusing / accepting stand-in for a PACS that takes report SRs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from bench.reliability.stack import wait_for_redis
from services.supervisor import worker_of
from tests.integration.conftest import (  # noqa: F401 - fixtures, re-exported for this folder
    REPO,
    Platform,
    chest_dicom,
    free_port,
    pg_database,
    platform,
    platform_env,
    random_bundle_512,
)

# Small on purpose: the whole folder must run in a few minutes on two cores.
RECONCILE_ENV = {"CXR_RECONCILE_INTERVAL_S": "0.5", "CXR_RECONCILE_STALE_S": "3"}
PIPELINE = ["received", "preprocessed", "inferred", "formatted", "reviewed"]


# ---------------------------------------------------------------- a Redis of our own

class RedisServer:
    """redis-server on a free loopback port, no persistence: a restart loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required for the reliability tests (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_for_redis(self.port, 10, self.proc):
            raise AssertionError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        """kill -9 and start again on the same port: every queued and unacknowledged message is lost."""
        self.kill()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Overrides the shared fixture: these tests get a redis-server nobody else uses."""
    return redis_server.url


# ---------------------------------------------------------------- a cuttable line to PostgreSQL

class TcpProxy:
    """Loopback TCP proxy to `upstream`. stop() closes the listener and cuts every open connection
    (clients see a refused connect, or a reset mid-query); start() listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    from tests.integration.conftest import PG_ADMIN_URL
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


# ---------------------------------------------------------------- a PACS that takes report SRs

class StowStandIn:
    """Answers STOW-RS POSTs with 200 and an empty body (what dicomweb-client reads as 'stored')
    on a fixed port; before start() nothing listens there, so a client's connection is refused."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"

    def entry(self) -> dict:
        return {"name": "archive", "url": self.url, "pull": False, "store_results": True, "retries": 0,
                "connect_timeout_s": 1, "read_timeout_s": 10}

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stand_in.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def stow_stand_in() -> Iterator[StowStandIn]:
    s = StowStandIn()
    try:
        yield s
    finally:
        s.close()


# ---------------------------------------------------------------- helpers

@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    eng = create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    try:
        yield eng
    finally:
        eng.dispose()


def stow(base_url: str, dicom: bytes, headers: dict[str, str]) -> httpx.Response:
    boundary = "cxr-reliability"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + dicom
            + f"\r\n--{boundary}--\r\n".encode())
    return httpx.post(f"{base_url}/dicomweb/studies", content=body, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}', **headers})


def submit(platform: Platform, dicom_factory: Callable[[], tuple[str, bytes]]) -> tuple[str, str]:
    """Stores one new study and asks for its report: (study_uid, job_id)."""
    study_uid, dicom = dicom_factory()
    stored = stow(platform.base_url, dicom, platform.headers)
    assert stored.status_code == 200, (stored.text, platform.logs())
    posted = httpx.post(f"{platform.base_url}/api/v1/studies/{study_uid}/report", json={}, timeout=30,
                        headers=platform.headers)
    assert posted.status_code == 202, (posted.text, platform.logs())
    return study_uid, posted.json()["job_id"]


def job_row(engine: Engine, job_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).mappings().one()
    return dict(row)


def events(engine: Engine, job_id: str) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(
            text("SELECT state FROM job_events WHERE job_id = :id ORDER BY id"), {"id": job_id})]


def wait_until(check: Callable[[], object], timeout: float, what: str, platform: Platform | None = None) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{platform.logs() if platform else ''}")


def wait_state(engine: Engine, job_id: str, states: set[str], timeout: float, platform: Platform | None = None) -> str:
    return str(wait_until(lambda: (s := job_row(engine, job_id)["state"]) in states and s, timeout,
                          f"job {job_id} to reach {sorted(states)}", platform))


def wait_log(platform: Platform, prefix: str, needle: str, timeout: float) -> None:
    """Until a log of a process named `prefix` shows `needle` (e.g. a worker received its task)."""
    def seen() -> bool:
        return any(needle in p.read_text(errors="replace") for p in platform.log_dir.glob(f"{prefix}-*.log"))

    wait_until(seen, timeout, f"{needle!r} in the {prefix} log", platform)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "libs.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def small_dx(make_chest_dicom) -> Callable[[], tuple[str, bytes]]:  # noqa: ANN001
    """Factory of small generated chest DX studies (fast to store and ingest)."""
    from pydicom.uid import generate_uid

    def make() -> tuple[str, bytes]:
        study_uid = generate_uid()
        return study_uid, make_chest_dicom(study_uid=study_uid, rows=512, columns=512)

    return make


def pacs_env(entry: dict) -> dict[str, str]:
    return {"CXR_PACS": json.dumps([entry])}


def worker_pid(platform: Platform, name: str, timeout: float = 30) -> int:
    """The pid of the worker process itself: the child of its supervisor (services/supervisor.py)."""
    supervisor = platform.procs[name].pid
    return int(wait_until(lambda: worker_of(supervisor), timeout, f"the {name} worker process", platform))


def received_count(platform: Platform, name: str) -> int:
    """How many task deliveries the logs of `name` show so far (Celery logs each one 'received')."""
    return sum(p.read_text(errors="replace").count("] received") for p in platform.log_dir.glob(f"{name}-*.log"))
