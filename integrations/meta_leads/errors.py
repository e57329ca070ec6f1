"""Meta Lead Ads' errors, typed from Graph's error JSON: the outbox retries
`MetaLeadsUnavailable` and nothing else.

Graph error JSON `{"error": {message, type, code, error_subcode, is_transient,
fbtrace_id}}` and the recovery per code:
https://developers.facebook.com/docs/graph-api/guides/error-handling; throttling codes:
https://developers.facebook.com/docs/graph-api/overview/rate-limiting. Graph answers most
throttling with a 4xx (400/403), so the code decides before the HTTP status.
"""

from __future__ import annotations

from typing import Any

from core.errors import AuthFailed, ProviderRejected, ProviderUnavailable, is_retryable_status
from integrations.errors import IntegrationError

TOKEN_ENV = "META_PAGE_ACCESS_TOKEN"

# 1 API Unknown / 2 API Service: "wait and retry"; 4 application, 17 user, 32 Page and
# 613 custom call-rate limits; 341 application limit reached; 368 temporarily blocked;
# 80000-80014 Business Use Case rate limits (80001: Pages).
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, *range(80000, 80015)})
# 190 token expired or invalid, 102 session: a new token is needed.
TOKEN_CODES = frozenset({102, 190})
# 10 permission denied, 200-299 API permission: leads_retrieval (or access to the
# Page's leads in the Leads Access Manager) is missing.
PERMISSION_CODES = frozenset({10, *range(200, 300)})
# 100 invalid parameter; with subcode 33 "Unsupported get request. Object with ID ...
# does not exist, cannot be loaded due to missing permissions, or does not support this
# operation": the lead does not exist, is older than the 90 days Meta keeps leads, or the
# token's Page cannot see it.
NOT_FOUND_CODE = 100
NOT_FOUND_SUBCODE = 33


class MetaLeadsError(IntegrationError):
    """A Graph lead read failed; catch this for "anything Lead Ads", raise a leaf.

    `retryable` and `auth_failed` are read from the type; `code`/`subcode` are Graph's,
    `fbtrace_id` is what Meta support asks for. The text never carries the token nor
    what the lead answered.
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


class MetaLeadsUnavailable(MetaLeadsError, ProviderUnavailable):
    """Not now: a rate limit, a transient Graph error, 5xx, a timeout or a broken
    connection. `retry_after` (seconds) when Meta said how long to wait."""


class MetaLeadsRejected(MetaLeadsError, ProviderRejected):
    """Meta refused the read, or its answer is not a lead: asking again will not help."""


class MetaLeadNotFound(MetaLeadsRejected):
    """The lead does not exist, is older than 90 days, or this Page's token cannot see it."""


class MetaLeadsAuthFailed(MetaLeadsRejected, AuthFailed):
    """No token, or Meta refused it (expired, revoked, lacking leads_retrieval): an
    operator must act."""


def graph_error_for(
    message: str,
    *,
    status: int,
    code: int | None,
    subcode: int | None,
    transient: bool,
    retry_after: float | None = None,
    fbtrace_id: str | None = None,
) -> MetaLeadsError:
    """The leaf for a refused read; `message` already says what happened, this adds what
    the operator must do."""
    meta: dict[str, Any] = {"status": status, "code": code, "subcode": subcode, "fbtrace_id": fbtrace_id}
    if code in TOKEN_CODES or (code is None and status == 401):
        return MetaLeadsAuthFailed(
            f"{message}. Meta refused the Page access token (expired or revoked): generate a "
            f"new Page access token (a system user token that does not expire) with the "
            f"leads_retrieval permission and put it in {TOKEN_ENV}",
            **meta,
        )
    if code in PERMISSION_CODES or (code is None and status == 403):
        return MetaLeadsAuthFailed(
            f"{message}. The token in {TOKEN_ENV} may not read this Page's leads: grant it "
            "the leads_retrieval permission (plus pages_show_list, pages_read_engagement, "
            "ads_management) and give the app access in the Page's Leads Access Manager",
            **meta,
        )
    if code in RETRYABLE_CODES or transient:
        return MetaLeadsUnavailable(message, retry_after=retry_after, **meta)
    if code == NOT_FOUND_CODE and subcode == NOT_FOUND_SUBCODE:
        return MetaLeadNotFound(
            f"{message}. The lead does not exist, is older than the 90 days Meta keeps "
            f"leads, or belongs to a Page the token in {TOKEN_ENV} has no access to: it "
            "cannot be fetched; export it from the form in Meta Business Suite if needed",
            **meta,
        )
    if is_retryable_status(status):
        return MetaLeadsUnavailable(message, retry_after=retry_after, **meta)
    return MetaLeadsRejected(message, **meta)


__all__ = [
    "NOT_FOUND_CODE",
    "NOT_FOUND_SUBCODE",
    "PERMISSION_CODES",
    "RETRYABLE_CODES",
    "TOKEN_CODES",
    "TOKEN_ENV",
    "MetaLeadNotFound",
    "MetaLeadsAuthFailed",
    "MetaLeadsError",
    "MetaLeadsRejected",
    "MetaLeadsUnavailable",
    "graph_error_for",
]
