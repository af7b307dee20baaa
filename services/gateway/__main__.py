"""`python -m services.gateway`: serve the gateway with uvicorn on CXR_HOST:CXR_PORT (127.0.0.1:8000).

HTTPS when CXR_TLS_CERTFILE and CXR_TLS_KEYFILE are set (PEM files, mounted from a secret store;
never in the repository). Without them it speaks plain HTTP: put it behind an ingress that
terminates TLS, and keep it on a private network (docs/security.md).
"""

from __future__ import annotations

import logging
import os


def main() -> None:
    import uvicorn

    from libs.core.config import get_settings
    from services.gateway.main import create_app

    logging.basicConfig(
        level=os.environ.get("CXR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
    )
    settings = get_settings()
    host = os.environ.get("CXR_HOST", "127.0.0.1")
    port = int(os.environ.get("CXR_PORT", "8000"))
    tls = tls_options(settings.tls_certfile, settings.tls_keyfile)
    logging.getLogger(__name__).info("serving %s on %s:%d", "HTTPS" if tls else "HTTP (TLS terminated elsewhere)",
                                     host, port)
    # Access logs carry paths (study and job UIDs) but never a body, so no patient data.
    # X-Forwarded-For is trusted from FORWARDED_ALLOW_IPS only (uvicorn's default: 127.0.0.1), so the
    # audit trail's source address is the client's, not the ingress's, and cannot be forged by others.
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=True, log_config=None, **tls)


def tls_options(certfile, keyfile) -> dict:  # noqa: ANN001 - Path | None
    """uvicorn's TLS arguments; both files or neither (one alone is a mistake, not a fallback to HTTP)."""
    if certfile is None and keyfile is None:
        return {}
    if certfile is None or keyfile is None:
        raise SystemExit("CXR_TLS_CERTFILE and CXR_TLS_KEYFILE must be set together")
    for path in (certfile, keyfile):
        if not os.path.isfile(path):
            raise SystemExit(f"TLS file {path} does not exist")
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}


if __name__ == "__main__":
    main()
