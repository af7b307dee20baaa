"""Bearer JWTs (RFC 9068 access tokens, SMART backend services) verified with PyJWT.

Keys come from the configured issuer: its OIDC discovery document's `jwks_uri`, a JWKS URL, or a
JWKS file. They are cached (`jwks_cache_s`); a token signed with a key id not in the cache makes
one refetch, which is how a key rotation at the issuer is picked up without a restart. Only the
asymmetric algorithms in `jwt_algorithms` (RS256, ES256 by default) are accepted, never `none`
or HMAC: a shared secret would let anyone holding it mint tokens for every scope.

Checked: signature, `iss` (exactly the configured issuer), `aud` (contains the configured
audience), `exp` and `nbf` with `jwt_leeway_s` of clock skew. Scopes are the `scope` claim
(space-separated, RFC 8693/9068) or a `scp` list.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from libs.auth.principal import AuthenticationFailed, Principal
from libs.core.config import Settings

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
FETCH_TIMEOUT_S = 5


class AuthConfigError(ValueError):
    """The OIDC settings cannot work (raised at start-up, not per request)."""


def _fetch_json(url: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(url, timeout=FETCH_TIMEOUT_S, follow_redirects=False)
    response.raise_for_status()
    return response.json()


class _FileKeys:
    """A JWKS file, read again when it changes (a key rotation by a config-management tool)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._keys: dict[str, PyJWK] = {}
        self._lock = threading.Lock()

    def key_for(self, kid: str | None) -> PyJWK:
        with self._lock:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                keyset = PyJWKSet.from_dict(json.loads(self.path.read_text()))
                self._keys = {k.key_id or "": k for k in keyset.keys}
                self._mtime = mtime
            keys = self._keys
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid is None or kid not in keys:
            raise AuthenticationFailed("the token's signing key is not one of the issuer's keys")
        return keys[kid]


class _UrlKeys:
    """A JWKS URL, given or found through OIDC discovery (looked up once, lazily)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks_client(self) -> PyJWKClient:
        with self._lock:
            if self._client is None:
                url = self.settings.oidc_jwks_url
                if url is None:
                    issuer = str(self.settings.oidc_issuer).rstrip("/")
                    discovery = _fetch_json(f"{issuer}/.well-known/openid-configuration")
                    url = discovery.get("jwks_uri")
                    if not url:
                        raise AuthenticationFailed("the issuer's discovery document has no jwks_uri")
                self._client = PyJWKClient(url, cache_keys=True, cache_jwk_set=True,
                                           lifespan=max(1, self.settings.jwks_cache_s), timeout=FETCH_TIMEOUT_S,
                                           cooldown_duration=self.settings.jwks_refetch_cooldown_s)
            return self._client

    def key_for_token(self, token: str) -> PyJWK:
        try:
            return self._jwks_client().get_signing_key_from_jwt(token)
        except AuthenticationFailed:
            raise
        except jwt.PyJWKClientError as exc:
            # Unknown kid after a refetch, or the issuer cannot be reached: either way, no key.
            log.warning("JWT signing key lookup failed: %s", exc)
            raise AuthenticationFailed("the token's signing key could not be found at the issuer") from None
        except Exception as exc:  # noqa: BLE001 - discovery unreachable or malformed
            log.warning("OIDC discovery failed: %s", exc)
            raise AuthenticationFailed("the issuer's keys could not be fetched") from None


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        algorithms = [a for a in settings.jwt_algorithms if a in ALLOWED_ALGORITHMS]
        if not algorithms:
            raise AuthConfigError(f"jwt_algorithms must name asymmetric algorithms ({', '.join(sorted(ALLOWED_ALGORITHMS))})")
        if not settings.oidc_audience:
            raise AuthConfigError("oidc_issuer is set but oidc_audience is not: every token must be checked "
                                  "for this service's audience")
        self.settings = settings
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.algorithms = algorithms
        self._file = _FileKeys(settings.oidc_jwks_file) if settings.oidc_jwks_file else None
        self._url = None if self._file else _UrlKeys(settings)

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthenticationFailed("the bearer token is not a JWT") from None
        if header.get("alg") not in self.algorithms:
            raise AuthenticationFailed(f"tokens signed with {header.get('alg')!r} are not accepted")
        key = self._file.key_for(header.get("kid")) if self._file else self._url.key_for_token(token)
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=self.settings.jwt_leeway_s, options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("the token is not valid yet (nbf)") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("the token was issued by another issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("the token is for another audience") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"the token has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationFailed("the token's signature is not valid") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"the token is not valid ({type(exc).__name__})") from None
        scopes = claims.get("scope", "")
        granted = scopes.split() if isinstance(scopes, str) else []
        if isinstance(claims.get("scp"), list):
            granted += [s for s in claims["scp"] if isinstance(s, str)]
        subject = str(claims.get("client_id") or claims.get("azp") or claims["sub"])
        return Principal(kind="jwt", id=subject[:150], name=str(claims.get("name", ""))[:100], scopes=frozenset(granted))


