"""`python -m services.gateway`: serve the gateway with uvicorn on CXR_HOST:CXR_PORT (127.0.0.1:8000)."""

from __future__ import annotations

import logging
import os


def main() -> None:
    import uvicorn

    from services.gateway.main import create_app

    logging.basicConfig(
        level=os.environ.get("CXR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    host = os.environ.get("CXR_HOST", "127.0.0.1")
    port = int(os.environ.get("CXR_PORT", "8000"))
    # Access logs carry paths (study and job UIDs) but never a body, so no patient data.
    uvicorn.run(create_app(), host=host, port=port, proxy_headers=True, log_config=None)


if __name__ == "__main__":
    main()
