"""schemathesis against the live OpenAPI document of a real gateway, with and without credentials.

    make api-fuzz                                   # or: .venv/bin/python -m bench.security.api_fuzz
    .venv/bin/python -m bench.security.api_fuzz --max-examples 40 --seed 7

1. Starts `python -m services.gateway` on a free loopback port (SQLite and the in-process queue in a
   temporary folder, the installed bundle), makes an API key holding every scope, stores one real
   study and has it reported, so reads can find data.
2. With credentials: `schemathesis run --checks all` on every operation (examples, coverage and
   fuzzing phases). The issue's bar: at least 1,000 generated cases, 0 server errors (ST101), 0
   response-schema violations; every other finding is listed too.
3. Without credentials (the schema is fetched once with the key, then the run sends none): a custom
   check (bench/security/st_hooks.py) requires 401 + WWW-Authenticate from every operation whose
   OpenAPI `security` is not empty.

Writes bench/results/api_fuzz.json and exits 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "api_fuzz.json"
SAMPLE = REPO / "samples" / "chest_pa"
BARS = {"ServerError": "server errors", "JsonSchemaError": "response-schema violations"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_gateway(work: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(CXR_DATA_DIR=str(work / "data"), CXR_QUEUE_BACKEND="inprocess", CXR_HOST="127.0.0.1",
               CXR_PORT=str(port), CXR_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    log = open(work / "gateway.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise SystemExit(f"the gateway did not start; see {work / 'gateway.log'}")


def _key(work: Path) -> str:
    os.environ["CXR_DATA_DIR"] = str(work / "data")
    from libs.auth import apikeys
    from libs.core.config import Settings
    from libs.storage.db import get_engine, upgrade_schema

    engine = get_engine(Settings(data_dir=work / "data", database_url=None).sqlalchemy_url)
    upgrade_schema(engine)
    return apikeys.create(engine, "schemathesis", "custom", ["system/*.*"])[1]


def _seed(base: str, key: str) -> None:
    """One real study, stored and reported, so read operations meet real data too."""
    import pydicom

    files = sorted(SAMPLE.glob("*.dcm"))
    if not files:
        return
    boundary = "st-seed"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes() + b"\r\n"
                    for f in files) + f"--{boundary}--\r\n".encode()
    headers = {"X-API-Key": key}
    r = httpx.post(f"{base}/dicomweb/studies", content=body, timeout=120, headers={
        **headers, "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    r.raise_for_status()
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    httpx.post(f"{base}/api/v1/studies/{study}/report", json={}, headers=headers, timeout=60).raise_for_status()
    httpx.get(f"{base}/api/v1/studies/{study}/report", params={"wait": 60}, headers=headers, timeout=90)


def _schemathesis(args: list[str], env: dict[str, str] | None = None) -> dict:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [exe, "run", *args, "--no-color", "--report", "json", "--report-json-path", str(report)]
        print("$", " ".join(a if "cxr_" not in a else "X-API-Key: <key>" for a in cmd), flush=True)
        done = subprocess.run(cmd, cwd=tmp, env={**os.environ, **(env or {})}, capture_output=True, text=True)
        tail = "\n".join(done.stdout.splitlines()[-40:])
        if not report.is_file():
            raise SystemExit(f"schemathesis wrote no report:\n{tail}\n{done.stderr[-2000:]}")
        data = json.loads(report.read_text())
        data["output_tail"] = tail
        return data


def _summary(run: dict) -> dict:
    failures = {f["type"]: {"code": f["code"], "title": f["title"], "count": f["count"], "operations": f["operations"]}
                for f in run["failures"]}
    return {"generated": run["test_cases"]["generated"], "with_failures": run["test_cases"]["with_failures"],
            "operations_tested": run["operations"]["tested"], "seconds": round(run["running_time"], 1),
            "failures": failures, "errors": run["errors"], "command": run["command"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=150, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cxr-api-fuzz-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    key = _key(work)
    proc = _start_gateway(work, port)
    try:
        _seed(base, key)
        authed = _schemathesis([f"{base}/openapi.json", "-H", f"X-API-Key: {key}", "--checks", "all",
                                "-n", str(args.max_examples), "--seed", str(args.seed)])
        schema = work / "openapi.json"
        schema.write_text(httpx.get(f"{base}/openapi.json", headers={"X-API-Key": key}, timeout=30).text)
        anonymous = _schemathesis([str(schema), "--url", base, "--checks", "protected_answers_401",
                                   "-n", str(max(20, args.max_examples // 3)), "--seed", str(args.seed)],
                                  env={"SCHEMATHESIS_HOOKS": "bench.security.st_hooks", "PYTHONPATH": str(REPO)})
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    with_creds, without = _summary(authed), _summary(anonymous)
    bars = {name: with_creds["failures"].get(kind, {}).get("count", 0) for kind, name in BARS.items()}
    result = {
        "with_credentials": with_creds,
        "without_credentials": without,
        "bars": {"generated_with_credentials": with_creds["generated"], **bars,
                 "protected_cases_not_401": sum(f["count"] for f in without["failures"].values())},
        "gateway_log": str(work / "gateway.log"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(authed["output_tail"])
    print(json.dumps(result["bars"], indent=2))
    ok = (with_creds["generated"] >= 1000 and all(v == 0 for v in bars.values())
          and result["bars"]["protected_cases_not_401"] == 0 and without["generated"] > 0)
    print("api-fuzz:", "PASS" if ok else "FAIL", f"(results in {RESULTS.relative_to(REPO)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
