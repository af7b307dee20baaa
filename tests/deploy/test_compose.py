"""docker-compose.yml and the compose-test override (deploy/docker/compose.test.yml), read as files:
what `make compose-test` runs for real is checked here without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import yaml

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
TEST = yaml.safe_load((REPO / "deploy" / "docker" / "compose.test.yml").read_text())["services"]


def _mounts(service: dict) -> list[tuple[str, str, bool]]:
    out = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        out.append((source, target, "ro" in mode))
    return out


def test_no_file_is_mounted_inside_a_read_only_mounted_folder() -> None:
    """Docker cannot create the mount point inside a read-only bind (the first `make compose-test` run
    failed so: the scrape and webhook keys under /etc/prometheus and /etc/alertmanager)."""
    for name, service in BASE.items():
        mounts = _mounts(service)
        ro_dirs = [PurePosixPath(t) for s, t, ro in mounts if ro and (REPO / s).is_dir()]
        for _, target, _ in mounts:
            for folder in ro_dirs:
                assert folder == PurePosixPath(target) or folder not in PurePosixPath(target).parents, \
                    f"{name}: {target} lies inside the read-only mount {folder}"


def test_the_test_stack_is_every_service_on_the_host_network_and_loopback() -> None:
    started = {n for n, s in TEST.items() if "profiles" not in s}
    assert started == set(BASE) - {"grafana"}  # Grafana: no image in any registry here
    text = (REPO / "deploy" / "docker" / "compose.test.yml").read_text()
    assert not re.search(r"\b(10|172|192\.168)\.\d+\.\d+", text)  # no private addresses
    for name in started:
        assert TEST[name]["network_mode"] == "host", name
        assert all(h.endswith(":127.0.0.1") for h in TEST[name]["extra_hosts"]), name
        # every name a configuration file uses resolves to loopback
        assert {h.split(":")[0] for h in TEST[name]["extra_hosts"]} >= set(BASE) - {"reconciler", "dimse", "grafana"}
    for name in ("gateway", "ingestion", "inference", "formatting", "qa", "reconciler", "dimse"):
        env = TEST[name]["environment"]
        assert env["DATABASE_URL"].endswith("@postgres:15432/cxr") and env["REDIS_URL"] == "redis://redis:16379/0"
        assert env["CXR_METRICS_HOST"] == "127.0.0.1"
    assert TEST["gateway"]["environment"]["CXR_HOST"] == "127.0.0.1"
    # the servers with a bind address listen on loopback only
    for name in ("redis", "postgres", "prometheus", "alertmanager"):
        assert "127.0.0.1" in " ".join(TEST[name]["command"]), name


def test_every_image_the_test_stack_uses_is_built_by_the_runner() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compose_test", REPO / "deploy" / "docker" / "compose_test.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    built = {runner.APP_IMAGE, *runner.SERVICE_IMAGES.values()}
    used = {s["image"] for n, s in TEST.items() if "image" in s}
    assert used == built
    for name in runner.SERVICE_IMAGES:
        assert (REPO / "deploy" / "docker" / f"{name}.Dockerfile").is_file()
