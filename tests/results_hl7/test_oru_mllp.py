"""HL7 v2.5.1 ORU^R01 results over MLLP, against a real MLLP listener (python-hl7's asyncio server) that
answers with the ACK codes a RIS sends; the messages it received are parsed back with hl7apy (strict
2.5.1 structure) and python-hl7."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import hl7
import hl7.mllp
import pydicom
import pytest
from fastapi.testclient import TestClient
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from libs.core.config import Hl7Destination, Settings
from libs.dicomweb.client import PacsUnavailable
from libs.dicomweb.results import store_sr
from libs.hl7.oru import OruHeader, build_oru_r01, control_id
from libs.sr import ModelIdentity, build_report_sr
from services.gateway import create_app
from tests.conftest import authorize
from tests.pacs.conftest import make_chest_study
from tests.pacs.orthanc import free_port
from tests.pacs.test_sr import _report


class Listener:
    """An MLLP listener on a free loopback port; `acks` is the MSA-1 code of each answer in turn
    ("" = no answer at all), the last one repeated."""

    def __init__(self, acks: list[str]) -> None:
        self.acks, self.received, self.port = acks, [], free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
            try:
                while not reader.at_eof():
                    message = await reader.readmessage()
                    self.received.append(str(message))
                    code = self.acks[min(len(self.received) - 1, len(self.acks) - 1)]
                    if code:
                        writer.writemessage(message.create_ack(code, message_id=f"ACK{len(self.received)}"))
                        await writer.drain()
            except asyncio.IncompleteReadError:
                pass
            finally:
                writer.close()

        async def main() -> None:
            self._server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            await self._server.serve_forever()

        try:
            self._loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self._loop)])
        self._thread.join(10)


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    server = Listener(getattr(request, "param", ["AA"]))
    yield server
    server.close()


def _sr_and_job():  # noqa: ANN202
    study = make_chest_study()
    sources = [pydicom.dcmread(io.BytesIO(b), stop_before_pixels=True) for b in study.files]
    report = _report(str(sources[0].StudyInstanceUID))
    report = report.model_copy(update={"findings_text": "Small right effusion | blunted angle ^ & ~ \\ noted.\nLine two."})
    sr = build_report_sr(report, sources, model=ModelIdentity("cxr-test", "1.2.3"),
                         series_instance_uid=pydicom.uid.generate_uid(), sop_instance_uid=pydicom.uid.generate_uid())

    class Job:  # the fields of JobRow the HL7 delivery reads
        id = "job-0001"
        model_output = {"model_name": "cxr-test", "model_version": "1.2.3"}

    Job.report = report.model_dump(mode="json")
    return sr, Job, sources[0], report


def _dest(listener: Listener, **kw) -> Hl7Destination:  # noqa: ANN003
    return Hl7Destination(name="ris", host="127.0.0.1", port=listener.port, receiving_application="RIS",
                          receiving_facility="RADIOLOGY", backoff_s=0, **kw)


def test_the_oru_is_valid_2_5_1_with_the_patient_order_text_and_a_result_per_finding(listener: Listener) -> None:
    sr, job, source, report = _sr_and_job()
    detail = store_sr(_dest(listener), sr, Settings(hl7_sending_facility="CXR"), job)
    assert detail == "accepted (AA)"
    (received,) = listener.received
    parsed = parse_message(received.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.STRICT)
    assert parsed.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and parsed.msh.msh_12.to_er7() == "2.5.1"
    msg = hl7.parse(received)
    assert str(msg.segment("MSH")[10]) == control_id(job.id)
    assert (str(msg.segment("MSH")[5]), str(msg.segment("MSH")[6])) == ("RIS", "RADIOLOGY")
    pid = msg.segment("PID")
    assert str(pid[3]).split("^")[0] == str(source.PatientID)
    assert str(pid[5]) == str(source.PatientName)  # family^given as components
    assert str(pid[7]) == str(source.PatientBirthDate) and str(pid[8]) == str(source.PatientSex)
    obr = msg.segment("OBR")
    assert str(obr[2]) == str(source.AccessionNumber) and str(obr[25]) == "P"  # preliminary
    assert "AI-GENERATED PRELIMINARY REPORT" in str(msg.segment("NTE")[3])
    obx = msg.segments("OBX")
    by_code = {str(o[3]).split("^")[0]: o for o in obx}
    # HL7 escapes for | ^ & ~ \, and a line break as \.br\
    assert str(by_code["18782-3"][5]) == r"Small right effusion \F\ blunted angle \S\ \T\ \R\ \E\ noted.\.br\Line two."
    assert str(by_code["19005-8"][5]) == report.impression
    numeric = [o for o in obx if str(o[2]) == "NM"]
    assert len(numeric) == len(report.findings)
    assert {str(o[3]).split("^")[0] for o in numeric} == {"60046008", "CMG"}
    assert all(str(o[11]) == "P" for o in obx)


@pytest.mark.parametrize("listener", [["AE", "AA"]], indirect=True)
def test_an_application_error_ack_is_sent_again_with_the_same_control_id(listener: Listener) -> None:
    sr, job, *_ = _sr_and_job()
    assert store_sr(_dest(listener), sr, Settings(), job) == "accepted (AA)"
    assert len(listener.received) == 2
    assert len({str(hl7.parse(m).segment("MSH")[10]) for m in listener.received}) == 1


@pytest.mark.parametrize("listener", [["AR"]], indirect=True)
def test_a_reject_is_not_sent_again(listener: Listener) -> None:
    sr, job, *_ = _sr_and_job()
    with pytest.raises(PacsUnavailable, match="rejected the ORU"):
        store_sr(_dest(listener, retries=3), sr, Settings(), job)
    assert len(listener.received) == 1


@pytest.mark.parametrize("listener", [[""]], indirect=True)
def test_no_ack_is_retried_then_unavailable(listener: Listener) -> None:
    sr, job, *_ = _sr_and_job()
    with pytest.raises(PacsUnavailable, match=r"no ACK within 1 s, after 3 attempt"):
        store_sr(_dest(listener, retries=2, timeout_s=1), sr, Settings(), job)
    assert len(listener.received) == 3


def test_the_control_id_is_stable_per_job_and_fits_msh_10() -> None:
    assert control_id("job-a") == control_id("job-a") != control_id("job-b")
    assert len(control_id("job-a")) == 20


def test_a_finished_report_goes_to_the_hl7_destination_with_the_job_outcome(listener: Listener, tmp_path: Path,
                                                                            random_bundle: Path) -> None:
    from tests.gateway.helpers import stow
    from tests.pacs.test_orthanc import _wait_report, _wait_results

    study = make_chest_study()
    settings = Settings(data_dir=tmp_path / "data", database_url=None, queue_backend="inprocess",
                        bundle_path=random_bundle, image_size=64, long_poll_max_s=60.0,
                        hl7_destinations=[_dest(listener).model_dump()])
    with TestClient(create_app(settings)) as client:
        authorize(client)
        assert stow(client, study.files[:1]).status_code == 200
        assert client.post(f"/api/v1/studies/{study.study_uid}/report", json={}).status_code == 202
        report = _wait_report(client, study.study_uid)
        results = _wait_results(client, report["job_id"])
    assert results["state"] == "stored" and results["servers"]["ris"]["detail"] == "accepted (AA)"
    (received,) = listener.received
    msg = hl7.parse(received)
    assert str(msg.segment("OBR")[3]) == report["report_id"]
    assert str(msg.segment("MSH")[10]) == control_id(report["job_id"])


def test_build_refuses_nothing_valid_and_the_header_is_configuration() -> None:
    sr, job, source, report = _sr_and_job()
    m = build_oru_r01(report, source, job.id, OruHeader(sending_application="APP", sending_facility="FAC"), "m 1")
    msh = hl7.parse(m.to_er7()).segment("MSH")
    assert (str(msh[3]), str(msh[4])) == ("APP", "FAC")
