"""`make up` as a user runs it (against this test's PostgreSQL database and Redis): the stack becomes
ready, /readyz lists a live worker per step, and it stops being ready when a step loses its worker;
`make down` stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import REPO, free_port

pytestmark = pytest.mark.integration

STEPS = ("ingestion", "inference", "formatting", "qa")


def _ready(base: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{base}/readyz", timeout=10)
    except httpx.HTTPError:
        return None


def _wait(base: str, want: int, timeout: float, logs: Path) -> dict:
    deadline = time.monotonic() + timeout
    r = None
    while time.monotonic() < deadline:
        r = _ready(base)
        if r is not None and r.status_code == want:
            return r.json()
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"/readyz not {want} after {timeout:g}s: {r.text if r is not None else 'no answer'}\n{tails}")


def test_make_up_is_ready_with_every_worker_then_make_down_stops_it(
        tmp_path: Path, pg_database: str, redis_url: str, random_bundle_512: Path) -> None:
    port = free_port()
    run, logs = tmp_path / "run", tmp_path / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(CXR_BUNDLE_PATH=str(random_bundle_512), CXR_DATA_DIR=str(tmp_path / "data"))
    make = ["make", "-s", f"UP_DATABASE_URL={pg_database}", f"UP_REDIS_URL={redis_url}", f"PORT={port}",
            f"RUN_DIR={run}", f"LOG_DIR={logs}"]
    base = f"http://127.0.0.1:{port}"
    up = subprocess.run([*make, "up"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        body = _wait(base, 200, 120, logs)
        assert body["status"] == "ready" and set(body["checks"].values()) == {"ok"}
        assert all(len(body["workers"][step]) == 1 for step in STEPS), body["workers"]
        assert [w["model_name"] for w in body["inference"]] != []

        # qa stopped (its supervisor passes SIGTERM on, the worker leaves the board): not ready, and why
        qa = int((run / "qa.pid").read_text())
        os.kill(qa, signal.SIGTERM)
        body = _wait(base, 503, 60, logs)
        assert body["checks"]["workers"] == "no live worker for: qa"
    finally:
        down = subprocess.run([*make, "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _ready(base) is None
    assert not list(run.glob("*.pid"))
