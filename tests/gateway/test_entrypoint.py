"""`python -m services.gateway` serves on CXR_HOST:CXR_PORT."""

from __future__ import annotations

import os
import signal
import ssl
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / "tls.crt", folder / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def test_serves_https_when_given_a_certificate(tmp_path: Path, random_bundle: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    port = _free_port()
    env = {**os.environ, "CXR_HOST": "127.0.0.1", "CXR_PORT": str(port), "CXR_DATA_DIR": str(tmp_path / "data"),
           "CXR_QUEUE_BACKEND": "inprocess", "CXR_BUNDLE_PATH": str(random_bundle), "CXR_IMAGE_SIZE": "64",
           "CXR_TLS_CERTFILE": str(certfile), "CXR_TLS_KEYFILE": str(keyfile), "PYTHONPATH": str(REPO)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=2, verify=ssl.create_default_context(cafile=str(certfile)))
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("gateway did not start") from None
                time.sleep(0.2)
        assert r.status_code == 200 and r.url.scheme == "https"
        with pytest.raises(httpx.TransportError):  # plain HTTP is not answered on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        assert httpx.get(f"https://127.0.0.1:{port}/api/v1/jobs/x", verify=ssl.create_default_context(cafile=str(certfile))).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
