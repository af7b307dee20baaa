"""Helpers for the gateway tests: STOW bodies, row and file counts."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import func, select

from libs.storage.models import InstanceRow, JobRow


def stow_body(parts: list[bytes], *, boundary: str | None = None,
              part_type: str = "application/dicom") -> tuple[bytes, str]:
    """(body, Content-Type) for a STOW-RS request holding one part per item."""
    boundary = boundary or f"cxr-{uuid.uuid4().hex}"
    out = bytearray()
    for data in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        out += data
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f'multipart/related; type="application/dicom"; boundary="{boundary}"'


def stow(client, parts: list[bytes], study_uid: str | None = None, **kwargs):  # noqa: ANN001, ANN201
    body, content_type = stow_body(parts, **kwargs)
    path = "/dicomweb/studies" + (f"/{study_uid}" if study_uid else "")
    return client.post(path, content=body, headers={"Content-Type": content_type})


def count_rows(app: FastAPI) -> dict[str, int]:
    with app.state.engine.connect() as conn:
        return {
            "instances": conn.execute(select(func.count()).select_from(InstanceRow)).scalar_one(),
            "jobs": conn.execute(select(func.count()).select_from(JobRow)).scalar_one(),
        }


def stored_files(app: FastAPI) -> list[Path]:
    root = app.state.settings.dicom_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_problem(response, status: int, slug: str | None = None) -> dict:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://cxr-report.dev/problems/")
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    assert body["title"] and body["detail"]
    assert body["instance"] == response.request.url.path
    return body


def reviewed_report(client, make_chest_dicom) -> dict:  # noqa: ANN001
    """Stores a new study, requests its report and waits for it (in-process pipeline): the report JSON."""
    from pydicom.uid import generate_uid

    study = generate_uid()
    assert stow(client, [make_chest_dicom(study_uid=study)]).status_code == 200
    assert client.post(f"/api/v1/studies/{study}/report", json={}).status_code == 202
    r = client.get(f"/api/v1/studies/{study}/report", params={"wait": 60})
    assert r.status_code == 200 and r.json()["status"] == "reviewed", r.text
    return r.json()
