"""The HTTP gateway: REST API, DICOMweb STOW-RS and health probes (FastAPI)."""

from services.gateway.main import create_app

__all__ = ["create_app"]
