"""Real processes, real Redis, real PostgreSQL: the four step workers and the gateway as subprocesses.

Each test gets its own PostgreSQL database and its own Redis database number, so runs never see
each other's jobs or messages. If Redis or PostgreSQL cannot be reached the tests fail with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("CXR_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingestion", "inference", "formatting", "qa")


@pytest.fixture
def pg_database() -> Iterator[str]:
    name = f"cxr_it_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required for integration tests: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Platform:
    env: dict[str, str]
    log_dir: Path
    base_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Every endpoint but the probes needs credentials: a key with every scope, made before start.
    headers: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, **extra_env: str) -> subprocess.Popen:
        module = "services.gateway" if name == "gateway" else f"services.{name}"
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env={**self.env, **extra_env}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"gateway did not start:\n{self.logs()}")


@pytest.fixture
def platform_env(tmp_path: Path, pg_database: str, redis_url: str, random_bundle_512: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_")}
    env.update(
        DATABASE_URL=pg_database,
        REDIS_URL=redis_url,
        CXR_DATA_DIR=str(tmp_path / "data"),
        CXR_BUNDLE_PATH=str(random_bundle_512),
        CXR_QUEUE_BACKEND="celery",
        CXR_VISIBILITY_TIMEOUT_S="6",
        CXR_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def platform(tmp_path: Path, platform_env: dict[str, str]) -> Iterator[Platform]:
    port = free_port()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    env = {**platform_env, "CXR_HOST": "127.0.0.1", "CXR_PORT": str(port)}
    plat = Platform(env=env, log_dir=log_dir, base_url=f"http://127.0.0.1:{port}",
                    headers={"X-API-Key": _all_scopes_key(platform_env["DATABASE_URL"])})
    try:
        yield plat
    finally:
        plat.stop_all()


def _all_scopes_key(database_url: str) -> str:
    from libs.auth import apikeys
    from libs.storage.db import get_engine, upgrade_schema

    engine = get_engine(database_url)
    upgrade_schema(engine)
    return apikeys.create(engine, "integration tests", "custom", ["system/*.*"])[1]


@pytest.fixture(scope="session")
def random_bundle_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TEST-ONLY random-weight bundle at the real 512 input size (never a default anywhere)."""
    from libs.bundle.testing import build_random_bundle

    return build_random_bundle(tmp_path_factory.mktemp("bundle") / "random", image_size=512)



@pytest.fixture
def chest_dicom(make_chest_dicom):  # noqa: ANN001, ANN201
    """Factory: the real chest CR from pydicom-data as a new study -> (study_uid, bytes)."""
    from pydicom.uid import generate_uid

    def make() -> tuple[str, bytes]:
        study_uid = generate_uid()
        return study_uid, make_chest_dicom(real=True, study_uid=study_uid)

    return make
