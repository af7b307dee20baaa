"""Fixtures for the PACS tests: a real Orthanc, real chest studies, the gateway on a real port."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from libs.core.config import Settings
from tests.conftest import pydicom_data_file
from tests.pacs.orthanc import Orthanc, free_port, start_orthanc

# The real chest radiograph of pydicom-data, uncompressed and JPEG 2000 (same image, two encodings).
CHEST_FILES = ("RG1_UNCR.dcm", "RG1_J2KI.dcm")


@dataclass
class ChestStudy:
    study_uid: str
    series_uids: list[str]
    sop_uids: list[str]
    files: list[bytes]
    transfer_syntaxes: list[str]


def make_chest_study(names: tuple[str, ...] = CHEST_FILES) -> ChestStudy:
    """One new study holding each named pydicom-data file as its own series (fresh UIDs, PA view)."""
    study_uid = generate_uid()
    study = ChestStudy(study_uid, [], [], [], [])
    for name in names:
        ds = pydicom.dcmread(pydicom_data_file(name))
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ViewPosition = "PA"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        study.series_uids.append(ds.SeriesInstanceUID)
        study.sop_uids.append(ds.SOPInstanceUID)
        study.files.append(buf.getvalue())
        study.transfer_syntaxes.append(str(ds.file_meta.TransferSyntaxUID))
    return study


@pytest.fixture
def chest_study() -> ChestStudy:
    return make_chest_study()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    """orthanc_factory(gateway_url=None, stable_age_s=60, forward_lua=False) -> a running Orthanc."""
    started: list[Orthanc] = []

    def start(**kwargs) -> Orthanc:  # noqa: ANN003
        orthanc = start_orthanc(tmp_path / f"orthanc-{len(started)}", **kwargs)
        started.append(orthanc)
        return orthanc

    try:
        yield start
    finally:
        for o in started:
            o.stop()


@pytest.fixture
def orthanc(orthanc_factory: Callable[..., Orthanc]) -> Orthanc:
    return orthanc_factory()


@pytest.fixture
def pacs_settings(tmp_path: Path, random_bundle: Path) -> Callable[..., Settings]:
    """Settings for an in-process gateway with the 64-pixel random bundle; keyword overrides."""

    def make(**overrides) -> Settings:  # noqa: ANN003
        values = dict(data_dir=tmp_path / "data", database_url=None, queue_backend="inprocess",
                      bundle_path=random_bundle, image_size=64, long_poll_max_s=60.0)
        values.update(overrides)
        return Settings(**values)

    return make


class GatewayServer:
    """The gateway app served by uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from services.gateway import create_app

        self.app = create_app(settings)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "GatewayServer":
        from libs.auth import apikeys

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the gateway did not start")
            time.sleep(0.05)
        # What Orthanc sends STOW-RS with (a PACS key), and what the test reads with (everything)
        self.pacs_key = apikeys.create(self.app.state.engine, "orthanc", "pacs")[1]
        self.key = apikeys.create(self.app.state.engine, "test reader", "custom", ["system/*.*"])[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def serve_gateway() -> Iterator[Callable[[Settings], GatewayServer]]:
    servers: list[GatewayServer] = []

    def serve(settings: Settings) -> GatewayServer:
        server = GatewayServer(settings).start()
        servers.append(server)
        return server

    try:
        yield serve
    finally:
        for s in servers:
            s.stop()
