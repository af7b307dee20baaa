"""The whole platform on loopback, started and stopped by the reliability benchmarks.

What `Stack` starts, each as its own process (its own session, so a SIGKILL hits exactly it):

- a private `redis-server` on a free 127.0.0.1 port, without persistence (`--save "" --appendonly no`),
  so `restart_redis()` (kill -9 + start) loses every queued and unacknowledged message, as a real
  Redis restart without AOF/RDB would;
- a private PostgreSQL database `cxr_bench_<hex>` on 127.0.0.1:5432, migrated, with one API key per
  role the clients need (pacs, ehr, ops); dropped at the end (unless keep=True);
- the four step workers `python -m services.{ingestion,inference,formatting,qa}` (CXR_QUEUE_BACKEND=celery),
  each a supervisor with the worker as its child (`worker_pid`), optionally `python -m services.reconciler`, and the gateway `python -m services.gateway` on a free port.

Everything runs from this checkout with this interpreter; nothing listens on anything but 127.0.0.1.
`stop()` (also on exceptions, Ctrl-C and SIGTERM: use the context manager and `install_signal_handlers`)
stops every process it started, by process group id, then drops the database and removes the data
directory. Every child also gets PR_SET_PDEATHSIG=SIGKILL, so even a SIGKILLed benchmark leaves no
orphaned worker behind. Logs are kept under var/bench/<label>-<time>/logs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.supervisor import die_with_parent, worker_of

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SERVICES = ("ingestion", "inference", "formatting", "qa")
PG_ADMIN_URL = os.environ.get("CXR_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER = os.environ.get("CXR_BENCH_REDIS_SERVER", "redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_redis(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> bool:
    """True once a redis-server on 127.0.0.1:`port` answers PING; False after `timeout_s` or when
    `proc` (the server) has exited. Also used by tests/reliability."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) raise SystemExit in the main thread, so `finally`/`__exit__` stop the stack
    exactly as Ctrl-C (KeyboardInterrupt) does."""

    def _exit(signum, _frame):  # noqa: ANN001
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)


class StackError(RuntimeError):
    pass


class Stack:
    def __init__(
        self,
        *,
        bundle: Path,
        label: str,
        reconciler: bool = False,
        extra_env: Mapping[str, str] | None = None,
        keep: bool = False,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.bundle = Path(bundle).resolve()
        self.label = label
        self.with_reconciler = reconciler
        self.extra_env = dict(extra_env or {})
        self.keep = keep
        self.startup_timeout_s = startup_timeout_s
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = REPO_ROOT / "var" / "bench" / f"{label}-{stamp}" / "logs"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cxr-{label}-"))
        self.data_dir = self.tmp / "data"
        self.db_name = f"cxr_bench_{uuid.uuid4().hex[:10]}"
        self.database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_name}"
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.gateway_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.gateway_port}"
        self.procs: dict[str, Proc] = {}
        self.redis: subprocess.Popen | None = None
        self.redis_starts = 0
        self.keys: dict[str, str] = {}
        self.engine = None
        self._db_created = False
        self._log_counter: dict[str, int] = {}

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_") and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            CXR_DATA_DIR=str(self.data_dir),
            CXR_BUNDLE_PATH=str(self.bundle),
            CXR_QUEUE_BACKEND="celery",
            CXR_LOG_LEVEL="INFO",
            CXR_HOST="127.0.0.1",
            CXR_PORT=str(self.gateway_port),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        from sqlalchemy import create_engine, text

        from libs.auth import apikeys
        from libs.storage.db import upgrade_schema

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log(f"{self.label}: logs in {self.log_dir.relative_to(REPO_ROOT)}, data in {self.data_dir}")
        self.start_redis()
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        except Exception as exc:  # noqa: BLE001
            raise StackError(f"PostgreSQL at {PG_ADMIN_URL} is needed: {exc}") from exc
        finally:
            admin.dispose()
        self._db_created = True
        self.engine = create_engine(self.database_url, pool_pre_ping=True)
        upgrade_schema(self.engine)
        for role in ("pacs", "ehr", "ops"):
            self.keys[role] = apikeys.create(self.engine, f"bench {self.label} {role}", role)[1]
        log(f"{self.label}: PostgreSQL database {self.db_name}, redis-server on 127.0.0.1:{self.redis_port}, "
            f"bundle {self.bundle}")
        for svc in SERVICES:
            self.start_process(svc)
        if self.with_reconciler:
            self.start_process("reconciler")
        self.start_process("gateway")
        self.wait_ready()

    def stop(self) -> None:
        """Every process this stack started, gateway first; then Redis, the database, the data."""
        order = ["gateway", *[n for n in self.procs if n != "gateway"]]
        for name in order:
            proc = self.procs.get(name)
            if proc is not None and proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for name in order:
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(timeout=10)
        self.kill_redis()
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        if self._db_created and not self.keep:
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
                self._db_created = False
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop database {self.db_name}: {exc}")
            finally:
                admin.dispose()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept: database {self.db_name}, data {self.tmp}")

    # ------------------------------------------------------------ processes

    def start_process(self, name: str, **env: str) -> Proc:
        module = "services.gateway" if name == "gateway" else f"services.{name}"
        n = self._log_counter.get(name, 0)
        self._log_counter[name] = n + 1
        log_path = self.log_dir / f"{name}-{n}.log"
        out = open(log_path, "ab")  # noqa: SIM115 - the child holds it
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", module], cwd=REPO_ROOT, env={**self.env, **env}, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - async-signal-safe: one prctl call
            )
        finally:
            out.close()
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        return proc

    def kill_process(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Signal one process (its whole group); returns its pid once it is gone."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.popen.pid, sig)
        except ProcessLookupError:
            pass
        proc.popen.wait(timeout=30)
        return proc.popen.pid

    def exited(self) -> list[tuple[str, int]]:
        """Processes that ended on their own (name, exit code); they are forgotten here."""
        gone = []
        for name, proc in list(self.procs.items()):
            rc = proc.popen.poll()
            if rc is not None:
                gone.append((name, rc))
                del self.procs[name]
        return gone

    def pid(self, name: str) -> int:
        return self.procs[name].popen.pid

    def worker_pid(self, name: str) -> int | None:
        """The step worker itself: the child of the process started here, its supervisor
        (services/supervisor.py), which starts a new one when it dies. None between the two."""
        return worker_of(self.procs[name].popen.pid)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU time of each running process (and its threads), from /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        pids = {n: p.popen.pid for n, p in self.procs.items()}
        if self.redis is not None:
            pids["redis"] = self.redis.pid
        for name, pid in pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = round((int(fields[11]) + int(fields[12])) / tick, 1)
            except (OSError, IndexError, ValueError):
                pass
        return out

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each step's Redis queue (every priority sub-queue summed)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=2, socket_connect_timeout=1)
        try:
            depths = {}
            for q in SERVICES:
                depths[q] = sum(client.llen(k) for k in client.scan_iter(match=f"{q}*") if client.type(k) == b"list")
            return depths
        finally:
            client.close()

    # ------------------------------------------------------------ redis

    def start_redis(self) -> None:
        n = self.redis_starts
        out = open(self.log_dir / f"redis-{n}.log", "ab")  # noqa: SIM115
        try:
            self.redis = subprocess.Popen(
                [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                 "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
        except FileNotFoundError as exc:
            raise StackError(f"{REDIS_SERVER} not found: the benchmarks run a private Redis") from exc
        finally:
            out.close()
        self.redis_starts += 1
        if not wait_for_redis(self.redis_port, 15, self.redis):
            if self.redis.poll() is not None:
                raise StackError(f"redis-server exited with {self.redis.returncode}; see {self.log_dir}/redis-{n}.log")
            raise StackError("redis-server did not answer PING within 15 s")

    def kill_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            try:
                os.killpg(self.redis.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.redis.wait(timeout=10)
        self.redis = None

    def restart_redis(self, down_s: float = 1.0) -> None:
        """kill -9, stay down `down_s`, start again on the same port: an empty Redis."""
        self.kill_redis()
        time.sleep(down_s)
        self.start_redis()

    # ------------------------------------------------------------ readiness

    def logs_tail(self, names: Iterable[str] | None = None, chars: int = 3000) -> str:
        paths = sorted(self.log_dir.glob("*.log"))
        if names is not None:
            paths = [p for p in paths if p.name.rsplit("-", 1)[0] in set(names)]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in paths)

    def wait_ready(self) -> None:
        """Gateway /readyz 200 with an inference worker listed, and every Celery worker 'ready.'"""
        deadline = time.monotonic() + self.startup_timeout_s
        pending = {*SERVICES}
        ready_http = False
        while time.monotonic() < deadline:
            for name, rc in self.exited():
                raise StackError(f"{name} exited with {rc} during start-up:\n{self.logs_tail([name])}")
            for svc in list(pending):
                if " ready." in self.procs[svc].log_path.read_text(errors="replace"):
                    pending.discard(svc)
            if not ready_http:
                try:
                    r = httpx.get(f"{self.base_url}/readyz", timeout=5)
                    ready_http = r.status_code == 200 and bool(r.json().get("inference"))
                except httpx.HTTPError:
                    pass
            if ready_http and not pending:
                log(f"{self.label}: stack ready: gateway {self.base_url}, workers "
                    + ", ".join(f"{n}={p.popen.pid}" for n, p in self.procs.items()))
                return
            time.sleep(0.5)
        raise StackError(f"stack not ready after {self.startup_timeout_s:.0f} s (waiting for "
                         f"{sorted(pending) or 'gateway /readyz'}):\n{self.logs_tail()}")
