"""HTTP metrics of a service: requests and latency by route template, method and status.

Labels are bounded by construction: the route's path *template* (`/api/v1/studies/{study_id}/report`),
never the path (which holds study UIDs), `unmatched` for anything no route serves, the method, and the
status code. The latency histogram's buckets resolve P50/P95/P99 from 5 ms to 120 s (long-polls with
`?wait=` and large STOW-RS uploads sit at the top).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

HTTP_REQUESTS = Counter(
    "cxr_http_requests", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "cxr_http_request_duration_seconds", "Time from receiving a request to the end of its response body",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)
# Only methods a client can choose from a fixed set; anything else is counted as OTHER.
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class HttpMetricsMiddleware:
    """Outermost middleware: it sees every answer, refusals of the security middleware included.
    `route_of(scope)` names the route template (services/gateway/routing.py for the gateway)."""

    def __init__(self, app: ASGIApp, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.route_of(scope)
        method = scope.get("method", "GET").upper()
        method = method if method in _METHODS else "OTHER"
        status = "500"  # what the server error middleware answers when the app raises

        async def measured_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, measured_send)
        finally:
            HTTP_REQUESTS.labels(route, method, status).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - started)
