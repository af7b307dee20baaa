"""The workers' container readiness probe (helm/cxr-report) against a real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from libs.observability.runtime_status import Heartbeat, WorkerBeat


def _probe(step: str, redis_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run([sys.executable, "-m", "libs.observability.worker_probe", step], env=env,
                          capture_output=True, text=True, timeout=60)


def test_ready_only_while_a_worker_of_that_step_on_this_host_beats(redis_url: str) -> None:
    here = socket.gethostname()
    other_host = Heartbeat(redis_url, beat=WorkerBeat("qa", "another-pod-7", time.time())).start()
    other_step = Heartbeat(redis_url, beat=WorkerBeat("ingestion", f"{here}-8", time.time())).start()
    try:
        time.sleep(0.3)
        r = _probe("qa", redis_url)
        assert r.returncode == 1 and f"no live qa worker on {here}" in r.stderr
        mine = Heartbeat(redis_url, beat=WorkerBeat("qa", f"{here}-9", time.time())).start()
        time.sleep(0.3)
        assert _probe("qa", redis_url).returncode == 0
        mine.stop()  # a worker that stops removes its beat at once
        assert _probe("qa", redis_url).returncode == 1
    finally:
        other_host.stop()
        other_step.stop()


def test_redis_unreachable_is_its_own_exit_status() -> None:
    r = _probe("qa", "redis://127.0.0.1:1/0")
    assert r.returncode == 2 and "cannot read the worker board" in r.stderr
