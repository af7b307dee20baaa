"""Which route a request will reach, decided before the router runs: the security middleware needs
its name (the access rule) and the metrics middleware its path template (a bounded label)."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def leaf_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The app's endpoints in routing order. FastAPI (0.16x) keeps included routers as nodes; their
    routes carry full paths (routers here are included without an extra prefix), so each leaf
    matches a request on its own."""
    out: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if prefix:  # would make leaf paths differ from request paths: refuse loudly
                raise RuntimeError(f"routers must be included without a prefix (found {prefix!r})")
            out.extend(leaf_routes(inner.routes))
        else:
            out.append(route)
    return out


def match_route(scope: Scope) -> tuple[BaseRoute | None, dict[str, Any]]:
    """The route the router will pick and its path parameters (a method mismatch counts)."""
    partial: tuple[BaseRoute, dict[str, Any]] | None = None
    for route in leaf_routes(scope["app"].router.routes):
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child.get("path_params", {})
        if match is Match.PARTIAL and partial is None:
            partial = (route, child.get("path_params", {}))
    return partial or (None, {})


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/v1/studies/{study_id}/report`), or `unmatched`."""
    route, _ = match_route(scope)
    return str(getattr(route, "path", None) or "unmatched")
