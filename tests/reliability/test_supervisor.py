"""services/supervisor.py: a worker that dies is started again; a stop signal stops it for good;
a supervisor killed with -9 leaves no orphan worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.integration.conftest import REPO

# A stand-in worker: writes its pid and the supervision flag, then exits with $RC or sleeps forever.
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    with out.open("a") as f:
        f.write(f"{os.getpid()} {os.environ.get('CXR_SUPERVISED_CHILD')}\\n")
    rc = os.environ.get("RC")
    if rc is not None and len(out.read_text().splitlines()) < 3:
        sys.exit(int(rc))
    time.sleep(600)
""")

SUPERVISOR = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    from services.supervisor import supervise
    sys.exit(supervise("test", [sys.executable, "-c", sys.argv[1], sys.argv[2]], max_delay_s=0.2))
""")


def _start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "children.txt"
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, CHILD, str(out)], cwd=REPO,
                            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, out


def _children(out: Path, count: int, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines() if out.exists() else []
        if len(lines) >= count:
            assert all(line.endswith(" 1") for line in lines), lines  # each child knows it is supervised
            return [int(line.split()[0]) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} worker starts: {out.read_text() if out.exists() else ''}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its parent (the supervisor) reaps it
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def test_a_worker_that_exits_is_started_again_whatever_its_status(tmp_path: Path) -> None:
    for rc in ("1", "0"):  # Celery exits 0 after its "Unrecoverable error": that is restarted too
        (tmp_path / rc).mkdir()
        proc, out = _start(tmp_path / rc, RC=rc)
        try:
            pids = _children(out, 3)
            assert len(set(pids)) == 3
            assert _alive(pids[2])
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)


def test_sigterm_stops_the_worker_and_the_supervisor_without_a_restart(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    [child] = _children(out, 1)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # the worker died of the forwarded signal
    _wait_dead(child)
    assert len(out.read_text().splitlines()) == 1
    assert "stopped" in proc.stderr.read()


def test_kill_9_of_the_worker_restarts_it_and_of_the_supervisor_leaves_no_orphan(tmp_path: Path) -> None:
    proc, out = _start(tmp_path)
    [first] = _children(out, 1)
    os.kill(first, signal.SIGKILL)
    second = _children(out, 2)[1]
    assert second != first and _alive(second)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    _wait_dead(second)  # PR_SET_PDEATHSIG
