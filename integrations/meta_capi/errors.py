"""Meta CAPI's errors, typed from Graph's error JSON: the outbox retries `CapiUnavailable`
and nothing else.

Graph error JSON and recovery per code:
https://developers.facebook.com/docs/graph-api/guides/error-handling
"""

from __future__ import annotations

from typing import Any

from core.errors import AuthFailed, ProviderRejected, ProviderUnavailable, is_retryable_status
from integrations.errors import IntegrationError

# 1 API Unknown / 2 API Service: "wait and retry"; 4, 17, 32, 613: call-rate limits;
# 341 application limit reached; 368 temporarily blocked ("wait and retry");
# 80000-80014: Business Use Case rate limits.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, *range(80000, 80015)})
# 102 session / 190 token expired or invalid / 10 and 200-299 permissions: an operator
# must act, retrying only burns attempts.
AUTH_CODES = frozenset({10, 102, 190, *range(200, 300)})
# 100 invalid parameter (CAPI subcodes 2804xxx: event too old, bad user_data...): the
# same payload will be refused again.
INVALID_PARAMETER_CODES = frozenset({100})


class CapiError(IntegrationError):
    """A CAPI call failed; catch this for "anything CAPI", raise a leaf.

    `retryable` (429/5xx/timeouts/transport/transient Graph codes) and `auth_failed`
    (token expired, missing permission: an operator must act) are read from the type;
    `code`/`subcode` are Graph's, `fbtrace_id` is what Meta support asks for. The text
    never carries the token or personal data.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


class CapiUnavailable(CapiError, ProviderUnavailable):
    """Not now: a rate limit, a transient Graph error, 5xx, a timeout or a broken connection."""


class CapiRejected(CapiError, ProviderRejected):
    """Meta refused the event (or took none of it): the same payload will fail again."""


class CapiAuthFailed(CapiRejected, AuthFailed):
    """The token expired, was revoked or lacks a permission."""


def capi_error_for(message: str, *, status: int, code: int | None, transient: bool, **meta: Any) -> CapiError:
    """The leaf for a Graph error. Codes decide before HTTP statuses: Graph answers
    400/403 for most of its rate limits."""
    if code in AUTH_CODES or (code is None and status in (401, 403)):
        return CapiAuthFailed(message, status=status, code=code, **meta)
    if code in RETRYABLE_CODES or transient:
        return CapiUnavailable(message, status=status, code=code, **meta)
    if code in INVALID_PARAMETER_CODES:
        return CapiRejected(message, status=status, code=code, **meta)
    if is_retryable_status(status):
        return CapiUnavailable(message, status=status, code=code, **meta)
    return CapiRejected(message, status=status, code=code, **meta)


__all__ = [
    "AUTH_CODES",
    "INVALID_PARAMETER_CODES",
    "RETRYABLE_CODES",
    "CapiAuthFailed",
    "CapiError",
    "CapiRejected",
    "CapiUnavailable",
    "capi_error_for",
]
