"""`python -m services.dimse`: the C-STORE / C-ECHO SCP on CXR_DIMSE_HOST:CXR_DIMSE_PORT as
CXR_DIMSE_AE_TITLE (docs/pacs.md, "DIMSE"). Stops on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading

from libs.core.config import get_settings


def main() -> None:
    logging.basicConfig(level=os.environ.get("CXR_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    # pynetdicom logs every PDU at INFO; its warnings and errors are enough beside ours.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    from libs.dimse.scp import ScpConfig, serve
    from libs.pipeline.intake import IntakeLimits
    from libs.storage.db import get_engine, upgrade_schema

    settings = get_settings()
    engine = get_engine(settings.sqlalchemy_url)
    upgrade_schema(engine)
    settings.dicom_dir.mkdir(parents=True, exist_ok=True)
    server = serve(ScpConfig.of(settings), engine, settings.dicom_dir, IntakeLimits.of(settings), block=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    engine.dispose()


if __name__ == "__main__":
    main()
