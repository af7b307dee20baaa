"""Errors that carry a reason a user can act on.

InputRejected means the input itself is wrong (not retried, reported as 4xx / a failed job);
anything else that escapes a step is treated as transient and retried with backoff.
"""

from __future__ import annotations


class CxrError(Exception):
    """Base class: `reason` is a one-line, PHI-free sentence shown to users."""

    code = "error"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InputRejected(CxrError):
    """The study/instance cannot be used (not a chest radiograph, no pixel data, truncated...)."""

    code = "input-rejected"


class NotFound(CxrError):
    code = "not-found"


class BundleUnavailable(CxrError):
    """No usable model bundle is installed or configured."""

    code = "bundle-unavailable"
