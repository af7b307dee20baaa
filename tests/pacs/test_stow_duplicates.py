"""The same instance sent twice is stored once and reported as already stored (a warning, not a failure)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.gateway import create_app
from services.gateway.stow import WARNING_ALREADY_STORED
from tests.gateway.helpers import count_rows, stored_files, stow
from tests.conftest import authorize

REFERENCED, FAILED = "00081199", "00081198"
SOP_INSTANCE, WARNING_REASON = "00081155", "00081196"


def test_resent_instance_is_listed_as_stored_with_warning_reason_45070(pacs_settings, make_chest_dicom) -> None:  # noqa: ANN001
    first_copy, second = make_chest_dicom(), make_chest_dicom()
    with TestClient(create_app(pacs_settings()), raise_server_exceptions=False) as client:
        authorize(client)
        assert stow(client, [first_copy]).status_code == 200
        again = stow(client, [first_copy, second])
        assert again.status_code == 200, again.text
        body = again.json()
        assert FAILED not in body  # a PACS re-forwarding a study must not see a failed transfer
        items = body[REFERENCED]["Value"]
        assert items[0][WARNING_REASON] == {"vr": "US", "Value": [WARNING_ALREADY_STORED]}
        assert WARNING_ALREADY_STORED == 45070 == 0xB00E
        assert WARNING_REASON not in items[1]  # newly stored: no warning
        assert "already stored" in again.headers["warning"]
        assert count_rows(client.app)["instances"] == 2
        assert len(stored_files(client.app)) == 2
