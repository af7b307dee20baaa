"""STOW-RS: statuses 200/202/409/4xx, DICOM JSON bodies, nothing left behind by rejected parts."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from tests.gateway.helpers import assert_problem, count_rows, stored_files, stow, stow_body

REFERENCED = "00081199"
FAILED = "00081198"
SOP_CLASS = "00081150"
SOP_INSTANCE = "00081155"
FAILURE_REASON = "00081197"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _sop_instance(ds_bytes: bytes) -> str:
    import io

    import pydicom

    return str(pydicom.dcmread(io.BytesIO(ds_bytes), stop_before_pixels=True).SOPInstanceUID)


def test_store_real_chest_cr(client, chest_dicom_bytes) -> None:  # noqa: ANN001
    r = stow(client, [chest_dicom_bytes])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    body = r.json()
    assert FAILED not in body
    [item] = body[REFERENCED]["Value"]
    assert item[SOP_CLASS] == {"vr": "UI", "Value": [CR_STORAGE]}
    assert item[SOP_INSTANCE]["Value"] == [_sop_instance(chest_dicom_bytes)]
    assert count_rows(client.app)["instances"] == 1
    [path] = stored_files(client.app)
    assert path.read_bytes() == chest_dicom_bytes
    assert "warning" not in r.headers


def test_duplicate_instance_is_stored_once(client, make_chest_dicom) -> None:  # noqa: ANN001
    data = make_chest_dicom()
    first = stow(client, [data])
    second = stow(client, [data, data])
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert len(second.json()[REFERENCED]["Value"]) == 2
    assert "already stored" in second.headers["warning"]
    assert count_rows(client.app)["instances"] == 1
    assert len(stored_files(client.app)) == 1


def test_partial_success_is_202_with_failed_sequence(client, make_chest_dicom, mr_dicom_bytes) -> None:  # noqa: ANN001
    good = make_chest_dicom()
    r = stow(client, [b"this is not DICOM at all", good, mr_dicom_bytes])
    assert r.status_code == 202, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    body = r.json()
    assert [i[SOP_INSTANCE]["Value"][0] for i in body[REFERENCED]["Value"]] == [_sop_instance(good)]
    failed = body[FAILED]["Value"]
    assert [f[FAILURE_REASON] for f in failed] == [{"vr": "US", "Value": [0xC000]}] * 2
    assert SOP_INSTANCE not in failed[0]  # unreadable: no UID to report
    assert failed[1][SOP_INSTANCE]["Value"] == [_sop_instance(mr_dicom_bytes)]
    warnings = r.headers.get_list("warning")
    assert len(warnings) == 2
    assert warnings[0].startswith('299 cxr-gateway "part 0: not a DICOM file')
    assert "part 2" in warnings[1] and "not a projection radiograph" in warnings[1]
    assert count_rows(client.app)["instances"] == 1
    assert len(stored_files(client.app)) == 1


def test_all_failed_is_409_problem_and_stores_nothing(client, make_chest_dicom, mr_dicom_bytes) -> None:  # noqa: ANN001
    truncated = make_chest_dicom()[:-5000]
    r = stow(client, [b"\x00" * 300, mr_dicom_bytes, truncated])
    body = assert_problem(r, 409, "stow-failed")
    assert "none of the 3 instances was stored" in body["detail"]
    failures = body["failures"]
    assert [f["index"] for f in failures] == [0, 1, 2]
    assert all(f["failure_reason"] == 0xC000 for f in failures)
    assert "not a DICOM file" in failures[0]["reason"]
    assert "not a projection radiograph" in failures[1]["reason"]
    assert failures[1]["sop_instance_uid"] == _sop_instance(mr_dicom_bytes)
    assert "truncated" in failures[2]["reason"] or "short" in failures[2]["reason"], failures[2]
    assert count_rows(client.app) == {"instances": 0, "jobs": 0}
    assert stored_files(client.app) == []


def test_non_chest_body_part_is_rejected(client, make_chest_dicom) -> None:  # noqa: ANN001
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(make_chest_dicom()))
    ds.BodyPartExamined = "KNEE"
    buf = io.BytesIO()
    ds.save_as(buf)
    body = assert_problem(stow(client, [buf.getvalue()]), 409, "stow-failed")
    assert "KNEE" in body["detail"] and "not the chest" in body["detail"]
    assert stored_files(client.app) == []


def test_study_endpoint_refuses_other_studies(client, make_chest_dicom) -> None:  # noqa: ANN001
    study = generate_uid()
    ours = make_chest_dicom(study_uid=study)
    theirs = make_chest_dicom()
    r = stow(client, [ours, theirs], study_uid=study)
    assert r.status_code == 202, r.text
    [failed] = r.json()[FAILED]["Value"]
    assert failed[FAILURE_REASON]["Value"] == [0xA901]
    assert failed[SOP_INSTANCE]["Value"] == [_sop_instance(theirs)]
    assert "not to study" in r.headers["warning"]
    assert count_rows(client.app)["instances"] == 1

    only_theirs = stow(client, [make_chest_dicom()], study_uid=study)
    assert assert_problem(only_theirs, 409)["failures"][0]["failure_reason"] == 0xA901
    assert count_rows(client.app)["instances"] == 1


def test_study_endpoint_with_invalid_uid(client, make_chest_dicom) -> None:  # noqa: ANN001
    assert_problem(stow(client, [make_chest_dicom()], study_uid="not-a-uid"), 422, "invalid-uid")
    assert count_rows(client.app)["instances"] == 0


def test_wrong_part_content_type_fails_that_part(client, make_chest_dicom) -> None:  # noqa: ANN001
    body = assert_problem(stow(client, [make_chest_dicom()], part_type="application/octet-stream"), 409)
    assert "application/octet-stream" in body["failures"][0]["reason"]
    assert count_rows(client.app)["instances"] == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        "application/json",
        "multipart/form-data; boundary=abc",
        'multipart/related; type="application/dicom+json"; boundary=abc',
        "multipart/related; boundary=\"unterminated",
    ],
)
def test_unsupported_content_types_are_415(sqlite_client, make_chest_dicom, content_type: str) -> None:  # noqa: ANN001
    body, _ = stow_body([make_chest_dicom()], boundary="abc")
    r = sqlite_client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert_problem(r, 415, "unsupported-media-type")
    assert count_rows(sqlite_client.app)["instances"] == 0


def test_missing_content_type_is_415(sqlite_client) -> None:  # noqa: ANN001
    r = sqlite_client.post("/dicomweb/studies", content=b"x", headers={"Content-Type": ""})
    assert_problem(r, 415)


@pytest.mark.parametrize(
    ("body", "content_type", "slug"),
    [
        (b"", 'multipart/related; type="application/dicom"; boundary=abc', "empty-body"),
        (b"--abc--", 'multipart/related; type="application/dicom"; boundary=abc', "empty-body"),
        (b"--abc\r\n\r\nDICM", 'multipart/related; type="application/dicom"; boundary=abc', "malformed-multipart"),
        (b"--abc\r\n\r\nx\r\n--abc--", 'multipart/related; type="application/dicom"', "malformed-multipart"),
        (b"--zzz\r\n\r\nx\r\n--zzz--", 'multipart/related; type="application/dicom"; boundary=abc',
         "malformed-multipart"),
    ],
)
def test_bad_bodies_are_400(sqlite_client, body: bytes, content_type: str, slug: str) -> None:  # noqa: ANN001
    r = sqlite_client.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
    assert_problem(r, 400, slug)


def test_body_over_the_limit_is_413(make_settings, chest_dicom_bytes) -> None:  # noqa: ANN001
    from fastapi.testclient import TestClient

    from services.gateway import create_app

    with TestClient(create_app(make_settings(max_upload_mb=1, auth_disabled=True))) as c:
        r = stow(c, [chest_dicom_bytes])  # 7 MB
        assert_problem(r, 413, "payload-too-large")

        # Without Content-Length (chunked upload) the limit still holds.
        body, content_type = stow_body([chest_dicom_bytes])

        def chunks():  # noqa: ANN202
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        r = c.post("/dicomweb/studies", content=chunks(), headers={"Content-Type": content_type})
        assert_problem(r, 413)
        assert count_rows(c.app)["instances"] == 0
        assert stored_files(c.app) == []
