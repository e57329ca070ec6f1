"""The Lead Ads client: reads one lead from the Graph API, one attempt per call.

Request: `GET {graph_url}/{version}/{leadgen_id}?fields=...` with a Page access token
that has `leads_retrieval` (https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving).
The token travels in `Authorization: Bearer`, never in the URL, so no log line, proxy or
stored request ever carries it.

Deciding when to fetch, storing and retrying belong to the caller (an outbox item, so a
Graph outage delays a lead but loses none): every failure is a `MetaLeadsError` leaf and
only `MetaLeadsUnavailable` is worth retrying. Only the lead's id, HTTP status, Graph
codes and `fbtrace_id` are logged, never what the lead answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr, ValidationError

from core.logging import get_logger
from core.meta_graph import graph_text, read_graph_error
from core.probe import ProbeIO, ProbeResult
from integrations.meta_leads.errors import (
    TOKEN_ENV,
    MetaLeadsAuthFailed,
    MetaLeadsError,
    MetaLeadsRejected,
    MetaLeadsUnavailable,
    graph_error_for,
)
from integrations.meta_leads.probe import probe_page
from integrations.meta_leads.schema import GRAPH_ID, GraphLead

log = get_logger(__name__)

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v21.0"
# What the lead node is asked for (Graph returns only `id` and `created_time` unasked).
LEAD_FIELDS = (
    "id",
    "created_time",
    "field_data",
    "form_id",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "platform",
    "is_organic",
)
_ERROR_DETAIL_MAX = 300
# A wait Meta announces beyond this is not a wait but a reason to let the backoff decide.
_MAX_RETRY_AFTER_S = 24 * 3600.0


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds Meta asked us to wait: `Retry-After: <seconds>`, else the longest
    `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`
    (https://developers.facebook.com/docs/graph-api/overview/rate-limiting)."""
    value = (headers.get("Retry-After") or "").strip()
    try:
        seconds = float(value) if value else None
    except ValueError:
        seconds = None
    if seconds is None:
        usage = _loads(headers.get("X-Business-Use-Case-Usage") or "")
        minutes = [
            item.get("estimated_time_to_regain_access")
            for items in (usage.values() if isinstance(usage, dict) else ())
            if isinstance(items, list)
            for item in items
            if isinstance(item, dict)
        ]
        waits = [m for m in minutes if isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0]
        seconds = max(waits) * 60.0 if waits else None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER_S)


@dataclass(frozen=True, slots=True)
class MetaLeadsConfig:
    """META_PAGE_ACCESS_TOKEN / META_GRAPH_*; built from Settings by the composition. An
    unconfigured record still builds a client: reading a lead is what refuses it."""

    page_access_token: SecretStr | None = None
    graph_url: str = DEFAULT_GRAPH_URL
    graph_version: str = DEFAULT_GRAPH_VERSION
    timeout_s: float = 15.0

    @property
    def configured(self) -> bool:
        token = self.page_access_token
        return token is not None and bool(token.get_secret_value().strip())


class MetaLeadsClient:
    """Reads leads by id. No retries here: the outbox owns them."""

    def __init__(self, config: MetaLeadsConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._base = "/".join([config.graph_url.rstrip("/"), config.graph_version.strip("/")])
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)

    @property
    def configured(self) -> bool:
        return self._config.configured

    def lead_url(self, leadgen_id: str) -> str:
        return f"{self._base}/{leadgen_id}"

    def _token(self) -> str:
        token = self._config.page_access_token
        secret = token.get_secret_value().strip() if token is not None else ""
        if not secret:
            raise MetaLeadsAuthFailed(
                f"{TOKEN_ENV} is not set: Lead Ads leads cannot be read. Put a Page access "
                "token with the leads_retrieval permission in it and restart the bot"
            )
        return secret

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}"}

    def _scrub(self, text: str) -> str:
        token = self._config.page_access_token
        secret = token.get_secret_value().strip() if token is not None else ""
        return text.replace(secret, "[REDACTED]") if secret else text

    async def fetch_lead(self, leadgen_id: str) -> GraphLead:
        """The lead node, or a MetaLeadsError leaf saying whether to try again."""
        lead_id = leadgen_id.strip() if isinstance(leadgen_id, str) else ""
        if not GRAPH_ID.fullmatch(lead_id):
            # It is the URL path: anything but digits could address another node.
            raise MetaLeadsRejected(f"meta_leads: {leadgen_id!r:.40} is not a lead id (digits only)")
        headers = self._auth()
        url = self.lead_url(lead_id)
        try:
            async with self._session.get(
                url, params={"fields": ",".join(LEAD_FIELDS)}, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                wait = retry_after_s(resp.headers)
                header_trace = graph_text(resp.headers.get("x-fb-trace-id"))
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            log.warning("meta_leads_failed", leadgen_id=lead_id, status=None, error="timeout", retryable=True)
            raise MetaLeadsUnavailable(
                f"meta_leads: reading lead {lead_id} timed out after {self._config.timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            what = type(exc).__name__
            log.warning("meta_leads_failed", leadgen_id=lead_id, status=None, error=what, retryable=True)
            raise MetaLeadsUnavailable(f"meta_leads: reading lead {lead_id} failed: {what}") from None

        data = _loads(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            error = self._error(lead_id, status, raw=raw, data=data, wait=wait, header_trace=header_trace)
            (log.warning if error.retryable else log.error)(
                "meta_leads_failed",
                leadgen_id=lead_id,
                status=status,
                code=error.code,
                subcode=error.subcode,
                fbtrace_id=error.fbtrace_id,
                retryable=error.retryable,
                auth_failed=error.auth_failed,
            )
            raise error
        if not isinstance(data, dict):
            # A 2xx that is not JSON is a proxy or an outage page, not Meta's answer.
            log.warning(
                "meta_leads_failed", leadgen_id=lead_id, status=status, error="not_json", retryable=True
            )
            raise MetaLeadsUnavailable(
                f"meta_leads: reading lead {lead_id}: HTTP {status} without a JSON body", status=status
            )
        try:
            lead = GraphLead.model_validate(data)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "lead" for e in exc.errors()[:3])
            log.error(
                "meta_leads_failed", leadgen_id=lead_id, status=status, error="invalid_lead", fields=fields
            )
            # Field names only: the values are what the lead answered.
            raise MetaLeadsRejected(
                f"meta_leads: Graph's answer for lead {lead_id} is not a lead (invalid: {fields})",
                status=status,
            ) from None
        log.info(
            "meta_leads_fetched",
            leadgen_id=lead_id,
            form_id=lead.form_id,
            ad_id=lead.ad_id,
            answers=len(lead.field_data),
            fbtrace_id=header_trace,
        )
        return lead

    def _error(
        self, lead_id: str, status: int, *, raw: str, data: Any, wait: float | None, header_trace: str | None
    ) -> MetaLeadsError:
        err = read_graph_error(
            data,
            raw,
            header_trace=header_trace,
            user_key="error_user_msg",
            scrub=self._scrub,
            max_detail=_ERROR_DETAIL_MAX,
        )
        return graph_error_for(
            err.summary(f"meta_leads: reading lead {lead_id} failed", status),
            status=status,
            code=err.code,
            subcode=err.subcode,
            transient=err.transient,
            retry_after=wait,
            fbtrace_id=err.trace,
        )

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Read the token's own node (`/me?fields=id,name`: the Page, for a Page token)."""
        token = self._config.page_access_token
        secret = token.get_secret_value().strip() if token is not None else ""
        return await probe_page(io, base_url=self._base, token=secret or None)


__all__ = [
    "DEFAULT_GRAPH_URL",
    "DEFAULT_GRAPH_VERSION",
    "LEAD_FIELDS",
    "MetaLeadsClient",
    "MetaLeadsConfig",
    "retry_after_s",
]
