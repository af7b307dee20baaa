"""What routes take from the application: settings, the database engine, the pipeline publisher, and
the authenticated caller (authentication itself runs before routing: services/gateway/security.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from libs.auth.principal import ANONYMOUS, Principal
from libs.core.config import Settings
from services.gateway.publish import Publisher


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


def get_principal(request: Request) -> Principal:
    """Who is calling; set by the security middleware (ANONYMOUS only when auth is switched off)."""
    return getattr(request.state, "principal", ANONYMOUS)


def audit_entity(request: Request, entity_type: str, entity_id: str) -> None:
    """Names what the call touched for its audit record (default: the route's entity and path id)."""
    request.state.audit_entity_type = entity_type
    request.state.audit_entity_id = entity_id


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
