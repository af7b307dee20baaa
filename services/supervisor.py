"""Keeps one worker process running: starts it again when it exits unexpectedly.

Why in-process rather than only the orchestrator's restart policy: `make up` and the tests run bare
processes, and one known way a worker dies is not a fault of ours: Celery 5.7 / kombu 5.7 end a
worker with "Unrecoverable error: AttributeError(... 'hostname')" when Redis goes away while the
threads pool (inference with batching) holds an unacknowledged message. Its message is redelivered
(acks_late) or re-sent by the reconciler; the worker has to come back for it to be taken.

The supervisor is the process the caller started (pid file, container PID 1); the worker is its
child, in a session of its own, and dies with it (PR_SET_PDEATHSIG), so a `kill -9` of the
supervisor leaves no orphan. SIGTERM/SIGINT are forwarded once and end supervision: a worker told
to stop is not restarted. Any other exit is restarted, status 0 included: Celery exits 0 after that
"Unrecoverable error" (measured: tests/reliability). Restarts back off
1, 2, 4 ... 30 s while the worker keeps dying within 10 s of its start (a crash loop: bad settings,
a broken bundle); one that ran longer is started again after 1 s.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("services.supervisor")

CHILD_ENV = "CXR_SUPERVISED_CHILD"  # set in the worker's environment: it runs the worker itself
MAX_DELAY_S = 30.0
HEALTHY_AFTER_S = 10.0  # a worker that ran this long had started fine: its death is no crash loop
_PR_SET_PDEATHSIG = 1


def is_child() -> bool:
    return os.environ.get(CHILD_ENV) == "1"


def worker_of(supervisor_pid: int) -> int | None:
    """The pid of the worker a supervisor is running (its child); None between two workers (Linux /proc)."""
    try:
        kids = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def die_with_parent() -> None:
    """`preexec_fn` of a child that must not outlive its parent (runs between fork and exec; also
    used by bench/reliability/stack.py)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan is possible after a kill -9 of the supervisor
        pass


def supervise(name: str, command: list[str], max_delay_s: float = MAX_DELAY_S,
              healthy_after_s: float = HEALTHY_AFTER_S) -> int:
    """Runs `command`, again each time it exits, until we are told to stop; returns the worker's last
    exit status as a shell would (128 + N for a worker ended by signal N)."""
    stop = threading.Event()
    child: subprocess.Popen | None = None

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s supervisor: signal %d, stopping the worker", name, signum)
        stop.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    delay = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command, env={**os.environ, CHILD_ENV: "1"}, start_new_session=True,
                                 preexec_fn=die_with_parent)
        log.info("%s worker started (pid %d)", name, child.pid)
        if stop.is_set():  # the signal came between the last wait and this start: pass it on
            child.terminate()
        rc = child.wait()
        if stop.is_set():
            log.info("%s worker (pid %d) stopped (status %d)", name, child.pid, rc)
            return _exit_status(rc)
        if time.monotonic() - started >= healthy_after_s:
            delay = 1.0
        how = f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        log.error("%s worker (pid %d) %s; starting it again in %gs", name, child.pid, how, delay)
        if stop.wait(delay):
            return _exit_status(rc)
        delay = min(delay * 2, max_delay_s)


def _exit_status(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


def supervise_module(name: str, module: str, argv: list[str]) -> None:
    sys.exit(supervise(name, [sys.executable, "-m", module, *argv]))
