"""The authenticated caller, as routes and the audit trail see it."""

from __future__ import annotations

from dataclasses import dataclass, field


class AuthenticationFailed(Exception):
    """No usable credentials (401). `reason` is safe to send back: it never echoes a secret."""

    def __init__(self, reason: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error  # RFC 6750 error code; None when no credentials were given at all


@dataclass(frozen=True)
class Principal:
    kind: str  # jwt | apikey | anonymous (auth switched off) | cli | system
    id: str  # JWT: issuer-local subject (client id); API key: its public id
    name: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def agent(self) -> str:
        """Who, for the audit trail: kind and id."""
        return f"{self.kind}:{self.id}"


ANONYMOUS = Principal(kind="anonymous", id="auth-disabled", name="authentication switched off")
