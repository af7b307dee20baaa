"""`python -m services.gateway` serves on CXR_HOST:CXR_PORT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_module_entry_point_serves(tmp_path: Path, random_bundle: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CXR_HOST": "127.0.0.1",
        "CXR_PORT": str(port),
        "CXR_DATA_DIR": str(tmp_path / "data"),
        "CXR_QUEUE_BACKEND": "inprocess",
        "CXR_BUNDLE_PATH": str(random_bundle),
        "CXR_IMAGE_SIZE": "64",
        "PYTHONPATH": str(REPO),
    }
    env.pop("DATABASE_URL", None)
    env.pop("CXR_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stdout.read().decode(errors="replace") if proc.poll() is not None
                                         else "gateway did not start") from None
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert (tmp_path / "data" / "cxr.db").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode(errors="replace")
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM).
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
