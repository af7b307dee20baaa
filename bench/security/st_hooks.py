"""Schemathesis hooks for the run without credentials: every protected operation must answer 401.

Loaded with SCHEMATHESIS_HOOKS=bench.security.st_hooks. An operation is protected when its OpenAPI
`security` is not empty (the gateway declares it from services/gateway/api/access.py).
"""

from __future__ import annotations

import schemathesis


@schemathesis.check
def protected_answers_401(ctx, response, case) -> None:  # noqa: ANN001
    security = case.operation.definition.raw.get("security")
    if security == []:
        return
    if response.status_code != 401:
        raise AssertionError(f"{case.method} {case.path} answered {response.status_code} without credentials")
    if "www-authenticate" not in {k.lower() for k in response.headers}:
        raise AssertionError(f"{case.method} {case.path}: 401 without WWW-Authenticate")
