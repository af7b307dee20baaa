"""HTTP sessions and `dicomweb-client` clients for the configured PACS servers.

One place decides how we talk to a PACS:
- auth per server: none, HTTP basic, or a bearer token (never logged);
- timeouts: (connect, read) on every request;
- retries with exponential backoff, done once, in the HTTP adapter: connection errors, read timeouts
  and 408/429/502/503/504 answers (a Retry-After header is honoured). POST is retried too: a STOW-RS
  store of the same SOP instance is idempotent on every PACS we know (Orthanc, dcm4chee) and on ours.
  dicomweb-client's own status retry is switched off so the two do not multiply.
- errors become `PacsUnavailable` with a one-line, PHI-free reason naming the server.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exc
from urllib3.util.retry import Retry

from libs.core.config import PacsServer

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class PacsUnavailable(Exception):
    """A PACS could not be reached, timed out or answered with an error.

    Treated as transient by the pipeline: the queue retries the step with backoff, and when the
    retries run out the job fails with this reason.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def make_session(pacs: PacsServer) -> requests.Session:
    session = requests.Session()
    retry = Retry(
        total=pacs.retries,
        connect=pacs.retries,
        read=pacs.retries,
        status=pacs.retries,
        other=0,
        allowed_methods=None,  # every verb, POST included (see the module docstring)
        status_forcelist=RETRY_STATUSES,
        backoff_factor=pacs.backoff_s,
        respect_retry_after_header=True,
        raise_on_status=False,  # hand the last answer back; raise_for_status names the status
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=2, pool_maxsize=4)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if pacs.auth == "basic":
        assert pacs.username is not None and pacs.password is not None
        session.auth = (pacs.username, pacs.password.get_secret_value())
    elif pacs.auth == "bearer":
        assert pacs.token is not None
        session.headers["Authorization"] = f"Bearer {pacs.token.get_secret_value()}"
    session.verify = pacs.verify_tls
    session.headers["User-Agent"] = "cxr-report (dicomweb-client)"
    return session


def make_client(pacs: PacsServer):  # noqa: ANN201 - dicomweb_client.DICOMwebClient
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(
        url=pacs.url.rstrip("/"),
        session=make_session(pacs),
        qido_url_prefix=pacs.qido_prefix,
        wado_url_prefix=pacs.wado_prefix,
        stow_url_prefix=pacs.stow_prefix,
        timeout=(pacs.connect_timeout_s, pacs.read_timeout_s),
    )
    client.set_http_retry_params(retry=False)
    return client


def describe(pacs: PacsServer, exc: BaseException, doing: str) -> PacsUnavailable:
    """A PacsUnavailable whose reason says which server, what we were doing and what went wrong."""
    who = f"PACS {pacs.name!r} ({pacs.url})"
    tries = f"after {pacs.retries + 1} attempt(s)"
    cause = _cause(exc)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        hint = " (check the credentials configured for it)" if status in (401, 403) else ""
        reason = f"{who} answered HTTP {status} {phrase} while {doing}{hint}"
        if status in RETRY_STATUSES:
            reason += f", {tries}"
    elif isinstance(exc, requests.ReadTimeout) or isinstance(cause, urllib3_exc.ReadTimeoutError):
        reason = f"{who} timed out while {doing}: no answer within {pacs.read_timeout_s:g} s, {tries}"
    elif isinstance(cause, urllib3_exc.NewConnectionError):  # a ConnectTimeoutError subclass: test it first
        reason = f"{who} unreachable while {doing} (connection refused or no route), {tries}"
    elif isinstance(exc, requests.ConnectTimeout) or isinstance(cause, urllib3_exc.ConnectTimeoutError):
        reason = f"{who} unreachable while {doing}: no connection within {pacs.connect_timeout_s:g} s, {tries}"
    elif isinstance(exc, requests.ConnectionError):
        if isinstance(cause, urllib3_exc.ProtocolError):
            what = "connection dropped"
        else:
            what = type(cause).__name__
        reason = f"{who} unreachable while {doing} ({what}), {tries}"
    elif isinstance(exc, requests.RequestException):
        reason = f"{who} request failed while {doing}: {type(exc).__name__}"
    else:
        reason = f"{who} sent an answer we could not use while {doing}: {type(exc).__name__}: {exc}"
    return PacsUnavailable(reason[:1000])


def _cause(exc: BaseException) -> BaseException:
    """What urllib3 gave up on: requests wraps it as ConnectionError(MaxRetryError(reason=...))."""
    seen = exc
    for _ in range(5):
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        inner = getattr(seen, "reason", None) if isinstance(getattr(seen, "reason", None), BaseException) else inner
        if inner is None or inner is seen:
            return seen
        seen = inner
    return seen
