"""A real Orthanc (Debian's `orthanc` + `orthanc-dicomweb` packages) as a plain child process.

The configuration is deploy/orthanc/orthanc.json with the test's own port, a temporary storage
folder, a random password, no DICOM (DIMSE) listener and, when asked, a DICOMweb server entry
pointing at our gateway. A missing binary or an Orthanc that does not come up fails the test with
the reason and the end of Orthanc's log: these tests never skip.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG_TEMPLATE = REPO / "deploy" / "orthanc" / "orthanc.json"
FORWARD_LUA = REPO / "deploy" / "orthanc" / "forward-to-cxr.lua"
ORTHANC_BIN = os.environ.get("CXR_TEST_ORTHANC_BIN", "Orthanc")
DICOMWEB_PLUGIN = os.environ.get("CXR_TEST_ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER = "cxr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    root: Path
    port: int
    password: str
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, self.password)

    def pacs_entry(self, **overrides: Any) -> dict[str, Any]:
        """This Orthanc as an entry of the platform's PACS list (Settings.pacs)."""
        entry = {"name": "orthanc", "url": self.dicomweb_url, "auth": "basic", "username": USER,
                 "password": self.password, "connect_timeout_s": 2, "read_timeout_s": 20, "retries": 1,
                 "backoff_s": 0.1}
        entry.update(overrides)
        return entry

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=60)

    def upload(self, data: bytes) -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/instances", content=data, headers={"Content-Type": "application/dicom"})
        assert r.status_code == 200, r.text
        return r.json()

    def study_id(self, study_uid: str) -> str:
        with self.client() as c:
            r = c.post("/tools/lookup", content=study_uid)
        r.raise_for_status()
        ids = [x["ID"] for x in r.json() if x["Type"] == "Study"]
        assert ids, f"Orthanc does not hold study {study_uid}"
        return ids[0]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


def write_config(root: Path, port: int, password: str, *, gateway_url: str | None = None,
                 gateway_key: str | None = None, stable_age_s: int = 60, forward_lua: bool = False,
                 modalities: dict[str, list] | None = None, dicom_port: int | None = None) -> Path:
    config = json.loads(CONFIG_TEMPLATE.read_text())
    config = copy.deepcopy(config)
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config.update({
        "Name": f"cxr-test-{port}",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "Plugins": [DICOMWEB_PLUGIN],
        "LuaScripts": [str(FORWARD_LUA)] if forward_lua else [],
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: password},
        # a DICOM listener (C-STORE SCP as ORTHANC, called AE checked) only where a test asks for one
        "DicomServerEnabled": dicom_port is not None,
        "DicomPort": dicom_port or 4242,
        "DicomAet": "ORTHANC",
        "DicomCheckCalledAet": True,
        "StableAge": stable_age_s,
        # DICOM peers Orthanc sends to as a C-STORE SCU (no listener of its own is needed for that)
        "DicomModalities": modalities or {},
    })
    config["DicomWeb"]["Servers"] = (
        # A PACS authenticates to the gateway with a `pacs` API key in a header (docs/security.md).
        {"cxr": {"Url": gateway_url.rstrip("/") + "/dicomweb/", "HasDelete": False, "Timeout": 60,
                 **({"HttpHeaders": {"X-API-Key": gateway_key}} if gateway_key else {})}}
        if gateway_url else {}
    )
    path = root / "orthanc.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_orthanc(root: Path, **config_kwargs: Any) -> Orthanc:
    # Debian installs it in /usr/sbin, which a non-root PATH may lack.
    binary = shutil.which(ORTHANC_BIN) or shutil.which(ORTHANC_BIN, path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.fail(f"Orthanc is not installed ({ORTHANC_BIN!r} not on PATH): run `make orthanc` "
                    "(apt-get install orthanc orthanc-dicomweb)", pytrace=False)
    if not Path(DICOMWEB_PLUGIN).is_file():
        pytest.fail(f"the Orthanc DICOMweb plugin is missing at {DICOMWEB_PLUGIN}: run `make orthanc`",
                    pytrace=False)
    root.mkdir(parents=True, exist_ok=True)
    orthanc = Orthanc(root=root, port=free_port(), password=secrets.token_urlsafe(12))
    config = write_config(root, orthanc.port, orthanc.password, **config_kwargs)
    log = open(orthanc.log_path, "ab")  # noqa: SIM115 - closed with the process
    orthanc.proc = subprocess.Popen([binary, str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if orthanc.proc.poll() is not None:
            pytest.fail(f"Orthanc exited with status {orthanc.proc.returncode} at start:\n{orthanc.log_tail()}",
                        pytrace=False)
        try:
            r = httpx.get(f"{orthanc.url}/plugins/dicom-web", auth=orthanc.auth, timeout=2)
            if r.status_code == 200:
                return orthanc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    orthanc.stop()
    pytest.fail(f"Orthanc did not answer on {orthanc.url} within 60 s:\n{orthanc.log_tail()}", pytrace=False)
