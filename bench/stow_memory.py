"""Gateway memory during one large STOW-RS upload: the body must stream to disk, not into RAM.

Starts `python -m services.gateway` (SQLite, in-process queue, no authentication, a temporary
CXR_DATA_DIR, CXR_MAX_UPLOAD_MB=1024) on a free loopback port, then POSTs one multipart/related
body of about --mb megabytes to /dicomweb/studies: valid chest DX instances (--rows x --rows,
16-bit, uncompressed, fresh UIDs each, one study), generated part by part while httpx sends them
(chunked transfer encoding, no Content-Length), so the client never holds the body either.
Meanwhile the gateway's resident set size is read from /proc/<pid>/status (VmRSS) every 50 ms;
VmHWM, the kernel's own high-water mark, is read at the end as a check on the sampling.

Prints and writes bench/results/stow_memory.json: baseline RSS (gateway started, before the
upload), peak RSS (sampled, and VmHWM), body size, elapsed time, parts stored.

  python -m bench.stow_memory [--mb 600] [--rows 2048] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "stow_memory.json"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
SAMPLE_S = 0.05
MiB = 1024 * 1024


# ---------------------------------------------------------------- the body


def _template(rows: int) -> Dataset:
    """A synthetic chest DX (no real patient), the same pixels for every part."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientName = "Synthetic^Bench"
    ds.PatientID = "SYN-BENCH"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    yy, xx = np.mgrid[0:rows, 0:rows]
    blob = np.exp(-(((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - rows / 2) / (rows / 3.5)) ** 2))
    noise = np.random.default_rng(0).normal(0, 0.03, size=(rows, rows))
    ds.PixelData = np.clip((blob + noise) * 4095, 0, 4095).astype(np.uint16).tobytes()
    return ds


def _instance(template: Dataset, study_uid: str, series_uid: str) -> bytes:
    template.StudyInstanceUID = study_uid
    template.SeriesInstanceUID = series_uid
    template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    template.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class Body:
    """An iterable multipart/related body of `parts` instances, built while it is sent."""

    def __init__(self, parts: int, rows: int) -> None:
        self.boundary = f"bench-{uuid.uuid4().hex}"
        self.parts = parts
        self.rows = rows
        self.sent = 0

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary="{self.boundary}"'

    def __iter__(self) -> Iterator[bytes]:
        template = _template(self.rows)
        study, series = generate_uid(), generate_uid()
        for _ in range(self.parts):
            yield from self._send(f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            data = _instance(template, study, series)
            for i in range(0, len(data), MiB):
                yield from self._send(data[i:i + MiB])
            yield from self._send(b"\r\n")
        yield from self._send(f"--{self.boundary}--\r\n".encode())

    def _send(self, chunk: bytes) -> Iterator[bytes]:
        self.sent += len(chunk)
        yield chunk


# ---------------------------------------------------------------- the gateway and its memory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid: int, field: str) -> int | None:
    """A `VmRSS:   1234 kB`-style line of /proc/<pid>/status, in kB (psutil is not a dependency)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._done.is_set():
            kb = _status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples.append((time.perf_counter() - start, kb))
            self._done.wait(SAMPLE_S)

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def peak_kb(self) -> int:
        return max(kb for _, kb in self.samples)


def _start_gateway(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXR_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        CXR_PORT=str(port),
        CXR_HOST="127.0.0.1",
        CXR_AUTH_DISABLED="true",
        CXR_MAX_UPLOAD_MB="1024",
        CXR_DATA_DIR=str(data_dir),
        CXR_QUEUE_BACKEND="inprocess",  # STOW creates no job; this only spares the benchmark a Redis
        CXR_LOG_LEVEL="WARNING",
    )
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "services.gateway"], cwd=REPO_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _wait_healthy(base: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the gateway did not become healthy in time")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the run


def run(target_mb: int, rows: int, keep: bool) -> dict:
    import httpx

    part_bytes = rows * rows * 2 + 1024  # pixels + header, about
    parts = max(1, round(target_mb * MiB / part_bytes))
    work = Path(tempfile.mkdtemp(prefix="cxr-stow-bench-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_gateway(work / "data", port, work / "gateway.log")
    try:
        _wait_healthy(base, proc)
        time.sleep(1.0)  # let start-up settle before the baseline
        baseline_kb = _status_kb(proc.pid, "VmRSS")
        sampler = RssSampler(proc.pid)
        sampler.start()
        body = Body(parts, rows)
        started = time.perf_counter()
        response = httpx.post(base + "/dicomweb/studies", content=iter(body),
                              headers={"Content-Type": body.content_type}, timeout=900.0)
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
        sampler.stop()
        hwm_kb = _status_kb(proc.pid, "VmHWM")
        stored = 0
        if response.status_code in (200, 202):
            stored = len(response.json().get("00081199", {}).get("Value", []))
        uploads = work / "data" / "uploads"
        leftovers = len(list(uploads.iterdir())) if uploads.exists() else 0
    finally:
        _stop(proc)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)

    return {
        "benchmark": "stow_memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "request": {"parts": parts, "rows": rows, "columns": rows, "body_bytes": body.sent,
                    "body_mib": round(body.sent / MiB, 1), "transfer": "chunked (no Content-Length)"},
        "http_status": response.status_code,
        "parts_stored": stored,
        "spool_files_left": leftovers,
        "elapsed_s": round(elapsed, 2),
        "throughput_mib_s": round(body.sent / MiB / elapsed, 1),
        "rss_mib": {
            "baseline": round(baseline_kb / 1024, 1) if baseline_kb else None,
            "peak_sampled": round(sampler.peak_kb / 1024, 1),
            "peak_over_baseline": round((sampler.peak_kb - (baseline_kb or 0)) / 1024, 1),
            "vm_hwm": round(hwm_kb / 1024, 1) if hwm_kb else None,
            "samples": len(sampler.samples),
            "sample_interval_ms": int(SAMPLE_S * 1000),
        },
        "work_dir": str(work) if keep else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=600, help="body size to send, in MiB (default 600)")
    parser.add_argument("--rows", type=int, default=2048, help="image side in pixels (default 2048: 8 MiB a part)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and the gateway log")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.mb, args.rows, args.keep)
    rss = result["rss_mib"]
    print(f"STOW-RS of {result['request']['body_mib']} MiB ({result['request']['parts']} parts): "
          f"HTTP {result['http_status']}, {result['parts_stored']} stored, {result['elapsed_s']} s "
          f"({result['throughput_mib_s']} MiB/s)")
    print(f"gateway RSS: baseline {rss['baseline']} MiB, peak {rss['peak_sampled']} MiB "
          f"(+{rss['peak_over_baseline']} MiB; VmHWM {rss['vm_hwm']} MiB), spool files left: "
          f"{result['spool_files_left']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
