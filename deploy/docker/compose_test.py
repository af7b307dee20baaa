"""`make compose-test`: build the images, run the whole docker-compose stack, push a real study
through the PACS and read its report, then tear everything down.

The stack is docker-compose.yml with deploy/docker/compose.test.yml on top: images built here from a
Debian base made with debootstrap (Docker Hub is not needed), every container on the host network,
loopback addresses only. The study goes the way a hospital's does: it is stored in Orthanc, Orthanc
forwards the stable study to the gateway over STOW-RS (deploy/orthanc/forward-to-cxr.lua), the gateway
reports it once stable, QA stores the report SR back in Orthanc. Also checked: every Prometheus
target is up and Alertmanager is ready. Timings go to bench/results/compose_test.json.

Needs root or the docker group, a running dockerd, docker-compose and debootstrap (the Makefile's
docker-tools target installs and starts them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "cxr-compose-test"
SOURCES = ["-f", "docker-compose.yml", "-f", "deploy/docker/compose.test.yml"]
# The effective file: the two above merged, less the published ports, which Docker refuses with the
# host network (and compose v1 cannot drop from an override).
MERGED = ROOT / "var" / "compose-test" / "docker-compose.yml"
COMPOSE = ["docker-compose", "-p", PROJECT, "-f", str(MERGED)]
BASE_IMAGE = "cxr-base:bookworm"
APP_IMAGE = "cxr-report:compose-test"
SERVICE_IMAGES = {"redis": "cxr-redis:local", "postgres": "cxr-postgres:local", "orthanc": "cxr-orthanc:local",
                  "prometheus": "cxr-prometheus:local"}
# Everything the stack listens on, all on 127.0.0.1 (compose.test.yml)
PORTS = {"gateway": 8000, "orthanc http": 8042, "orthanc dicom": 4242, "prometheus": 9090,
         "alertmanager": 9093, "ingestion metrics": 9100, "inference metrics": 9101,
         "formatting metrics": 9102, "qa metrics": 9103, "dimse": 11112, "postgres": 15432, "redis": 16379}
GATEWAY = "http://127.0.0.1:8000"
ORTHANC = "http://127.0.0.1:8042"
ORTHANC_AUTH = ("cxr", os.environ.get("ORTHANC_PASSWORD", "change-me"))  # deploy/orthanc/orthanc.json
SECRETS = ROOT / "var" / "secrets"
LOG = ROOT / "var" / "log" / "compose-test.log"
RESULT = ROOT / "bench" / "results" / "compose_test.json"


class Failed(Exception):
    pass


def sh(*cmd: str, env: dict | None = None, capture: bool = False, check: bool = True) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and done.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {done.returncode}: {(done.stderr or '')[-2000:]}")
    return done.stdout or ""


def preflight() -> None:
    for tool in ("docker", "docker-compose"):
        if not shutil.which(tool):
            raise Failed(f"{tool} is not installed (make docker-tools)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise Failed("no Docker engine answers on this host: start dockerd (make docker-tools starts it)")
    taken = []
    for name, port in PORTS.items():
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(f"{name} ({port})")
    if taken:
        raise Failed("ports the stack needs are taken on 127.0.0.1: " + ", ".join(taken)
                     + " (make down stops `make up`'s services)")


def base_image() -> None:
    """The Debian base every image here starts from, made with debootstrap once and kept."""
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode == 0:
        return
    if not shutil.which("debootstrap"):
        raise Failed("debootstrap is not installed (make docker-tools)")
    rootfs = ROOT / "var" / "docker" / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    sh("debootstrap", "--variant=minbase", "bookworm", str(rootfs))
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


def host_certificates() -> list[str]:
    """This host's extra CA certificates (a TLS-inspecting proxy's) go into the app image, so pip
    inside the build trusts what pip here trusts. deploy/docker/certs/*.crt is git-ignored."""
    copied = []
    for crt in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        shutil.copy(crt, ROOT / "deploy" / "docker" / "certs" / crt.name)
        copied.append(crt.name)
    return copied


def build() -> None:
    for name, tag in SERVICE_IMAGES.items():
        sh("docker", "build", "-q", "--network", "host", "--build-arg", f"BASE={BASE_IMAGE}", "-t", tag,
           "-f", f"deploy/docker/{name}.Dockerfile", "deploy/docker")
    sh("docker", "build", "-q", "--network", "host", "--build-arg", f"BASE={BASE_IMAGE}", "-t", APP_IMAGE, ".")


def wait(what: str, probe, timeout_s: float, every_s: float = 2.0):  # noqa: ANN001
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(every_s)
    raise Failed(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last})")


def healthy(service: str) -> bool:
    cid = sh(*COMPOSE, "ps", "-q", service, capture=True).strip()
    if not cid:
        return False
    state = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", cid, capture=True, check=False).strip()
    return state == "healthy"


def api_key(role: str, name: str) -> str:
    out = sh(*COMPOSE, "run", "--rm", "--no-deps", "-T", "gateway", "cxr-report", "apikey", "create",
             "--role", role, "--name", name, "--json", capture=True)
    return json.loads(out.strip().splitlines()[-1])["key"]


def write_compose(pacs_key: str) -> None:
    """Merges the compose files (interpolating the Orthanc key Orthanc sends with each STOW-RS)."""
    import yaml

    text = sh("docker-compose", "-p", PROJECT, *SOURCES, "config", env={"CXR_PACS_API_KEY": pacs_key}, capture=True)
    merged = yaml.safe_load(text)
    for service in merged["services"].values():
        service.pop("ports", None)
    MERGED.parent.mkdir(parents=True, exist_ok=True)
    MERGED.write_text(yaml.safe_dump(merged, sort_keys=False))


def run(keep: bool) -> dict:
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    preflight()
    write_compose("not-created-yet")  # the real key needs the database, made below
    base_image()
    timings["base_image_s"] = time.monotonic() - t0
    certs = host_certificates()
    t = time.monotonic()
    build()
    timings["build_s"] = time.monotonic() - t
    t = time.monotonic()
    try:
        sh(*COMPOSE, "up", "-d", "postgres", "redis")
        wait("PostgreSQL and Redis healthy", lambda: healthy("postgres") and healthy("redis"), 120)
        sh(*COMPOSE, "run", "--rm", "--no-deps", "-T", "gateway", "cxr-report", "db", "upgrade")
        SECRETS.mkdir(parents=True, exist_ok=True)
        for file, name in (("prometheus-key", "prometheus scrape"), ("alertmanager-key", "alertmanager webhook")):
            (SECRETS / file).write_text(api_key("ops", name))
            (SECRETS / file).chmod(0o644)  # read by the container's user
        write_compose(api_key("pacs", "orthanc"))
        ehr = {"X-API-Key": api_key("ehr", "compose test")}
        sh(*COMPOSE, "up", "-d")
        ready = wait("the gateway's /readyz", lambda: httpx.get(f"{GATEWAY}/readyz", timeout=5).status_code == 200, 300)
        timings["start_to_ready_s"] = time.monotonic() - t
        print("ready:", ready, flush=True)

        # A real study into the PACS; Orthanc forwards it once stable (StableAge 60 s).
        t = time.monotonic()
        files = sorted((ROOT / "samples" / "chest_pa").glob("*.dcm"))
        study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        for f in files:
            r = httpx.post(f"{ORTHANC}/instances", content=f.read_bytes(), auth=ORTHANC_AUTH, timeout=60)
            if r.status_code != 200:
                raise Failed(f"Orthanc refused {f.name}: {r.status_code} {r.text[:300]}")

        def report() -> dict | None:
            r = httpx.get(f"{GATEWAY}/api/v1/studies/{study_uid}/report", headers=ehr, timeout=30)
            return r.json() if r.status_code == 200 else None

        body = wait("the report of the study stored in Orthanc", report, 300, every_s=5)
        timings["pacs_to_report_s"] = time.monotonic() - t

        def sr_in_orthanc() -> list | None:
            r = httpx.get(f"{ORTHANC}/dicom-web/studies/{study_uid}/series", params={"Modality": "SR"},
                          auth=ORTHANC_AUTH, timeout=30)
            return r.json() if r.status_code == 200 and r.json() else None

        wait("the report SR stored back in Orthanc", sr_in_orthanc, 120)
        timings["pacs_to_sr_back_s"] = time.monotonic() - t

        def targets_up() -> list | None:
            active = httpx.get("http://127.0.0.1:9090/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            up = [a["labels"]["job"] for a in active if a["health"] == "up"]
            return up if len(up) == len(active) == 5 else None

        jobs = wait("every Prometheus target up", targets_up, 120, every_s=5)
        wait("Alertmanager ready", lambda: httpx.get("http://127.0.0.1:9093/-/ready", timeout=5).status_code == 200, 60)
        rules = httpx.get("http://127.0.0.1:9090/api/v1/rules", timeout=10).json()["data"]["groups"]
        findings = [f.get("observation") or f.get("label") for f in body.get("findings", [])]
        print(f"report {body.get('report_id')} ({body.get('status')}), findings {findings}", flush=True)
    finally:
        LOG.parent.mkdir(parents=True, exist_ok=True)
        LOG.write_text(sh(*COMPOSE, "logs", "--no-color", capture=True, check=False))
        if not keep:
            sh(*COMPOSE, "down", "-v", "--remove-orphans", check=False)
    timings["total_s"] = time.monotonic() - t0
    return {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "study": "samples/chest_pa",
            "report_status": body.get("status"), "prometheus_targets_up": sorted(jobs),
            "rule_groups": len(rules), "extra_ca_certificates": certs,
            "ports": PORTS, "logs": str(LOG.relative_to(ROOT))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running (then: docker-compose -p "
                        f"{PROJECT} -f {MERGED.relative_to(ROOT)} down -v)")
    args = parser.parse_args()
    try:
        result = run(args.keep)
    except Failed as exc:
        print(f"compose-test FAILED: {exc} (container logs: {LOG})", file=sys.stderr)
        return 1
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
