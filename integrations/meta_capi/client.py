"""The Conversions API client: one POST per event, one attempt per call.

Request: `POST https://graph.facebook.com/{API_VERSION}/{PIXEL_ID}/events` with
`data=[event]` and `test_event_code` (Test Events tool) -
https://developers.facebook.com/documentation/ads-commerce/conversions-api/using-the-api
and https://developers.facebook.com/documentation/ads-commerce/marketing-api/reference/ads-pixel/events.
The token travels in `Authorization: Bearer`, as in Meta's own JSON example for messaging
events (https://developers.facebook.com/documentation/business-messaging/whatsapp/
embedded-signup/automatic-events-api), so it is never part of a URL or of a body a caller
might log or persist.

Deciding when to send, storing and retrying belong to the caller (the outbox): every
failure is a `CapiError` leaf, and only `CapiUnavailable` is worth retrying. Only the
event name, its (hashed) id, HTTP status, Graph codes and `fbtrace_id` are logged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import SecretStr, ValidationError

from core.logging import get_logger
from core.meta_graph import read_graph_error
from core.probe import ProbeIO, ProbeResult
from integrations.meta_capi.errors import CapiError, CapiRejected, CapiUnavailable, capi_error_for
from integrations.meta_capi.event import DEFAULT_LEAD_EVENT_SOURCE
from integrations.meta_capi.models import CapiEvent, CapiRequest, CapiResult, clean_text
from integrations.meta_capi.probe import probe_pixel

log = get_logger(__name__)

_PIXEL_ID = re.compile(r"[0-9]{1,32}")
_ERROR_DETAIL_MAX = 300


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class MetaCapiConfig:
    """META_PIXEL_ID / META_ACCESS_TOKEN / META_TEST_EVENT_CODE / META_GRAPH_*; built from
    Settings by web/configs/integrations.py. A record that is not `configured` still
    builds: the client is what refuses it (and a pixel id that is not digits), with a
    ValueError the doctor turns into its advice."""

    graph_url: str
    version: str
    pixel_id: str | None
    access_token: SecretStr | None
    test_event_code: str | None = None
    # 30 s is the CAPI timeout of the CRM connections spec's retry table.
    timeout_s: float = 30.0
    # WHATSAPP_BUSINESS_ACCOUNT_ID: the WABA a click-to-WhatsApp event is credited to
    # (user_data.whatsapp_business_account_id beside ctwa_clid); None leaves it out.
    whatsapp_business_account_id: str | None = None
    # custom_data.lead_event_source of a Lead Ads lead's events (Conversions API for CRM):
    # "the name of the tool where the leads are coming from".
    lead_event_source: str = DEFAULT_LEAD_EVENT_SOURCE

    @property
    def configured(self) -> bool:
        return bool(self.pixel_id and self.access_token)


class MetaCapiClient:
    """Sends one event per call to a pixel/dataset. No retries here: the outbox owns them."""

    def __init__(self, config: MetaCapiConfig, session: aiohttp.ClientSession) -> None:
        pixel = (config.pixel_id or "").strip()
        if not _PIXEL_ID.fullmatch(pixel):
            # It ends up in the URL path: anything but digits could address another edge.
            raise ValueError("pixel_id must be the numeric id of the pixel/dataset")
        token = config.access_token
        if token is None or not token.get_secret_value().strip():
            raise ValueError("access_token is required")
        self._session = session
        self._token = token
        # The pixel's Graph node: the doctor reads it, events are posted to its edge.
        self._node_url = "/".join([config.graph_url.rstrip("/"), config.version.strip("/"), pixel])
        self._url = f"{self._node_url}/events"
        self._test_event_code = (config.test_event_code or "").strip() or None
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._waba = (config.whatsapp_business_account_id or "").strip() or None
        self._lead_event_source = (config.lead_event_source or "").strip() or DEFAULT_LEAD_EVENT_SOURCE

    @property
    def url(self) -> str:
        return self._url

    @property
    def whatsapp_business_account_id(self) -> str | None:
        """The account's WABA, for the events built for this pixel (build_event)."""
        return self._waba

    @property
    def lead_event_source(self) -> str:
        """The CRM name a Lead Ads lead's events carry (build_event's lead_event_source)."""
        return self._lead_event_source

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    def request_body(self, event: CapiEvent) -> dict[str, Any]:
        return CapiRequest(data=[event], test_event_code=self._test_event_code).model_dump(
            mode="json", exclude_none=True
        )

    async def send(self, event: CapiEvent | Mapping[str, Any]) -> CapiResult:
        """POST one event; CapiResult on success, a CapiError leaf otherwise.

        Accepts the event model or its persisted JSON. A 2xx without a readable body is
        reported as success with `events_received=None`: Meta may have counted it, and
        for business messaging nobody deduplicates a resend.
        """
        ev = self._coerce(event)
        ctx = {
            "event_name": ev.event_name,
            "event_id": ev.event_id,
            "action_source": ev.action_source,
            "messaging_channel": ev.messaging_channel,
            "test": self._test_event_code is not None,
        }
        status, raw, header_trace = await self._post(ev, ctx)
        data = _loads(raw)
        if not 200 <= status < 300 or (isinstance(data, dict) and isinstance(data.get("error"), dict)):
            error = self._error(ev.event_name, status, raw, data, header_trace)
            (log.warning if error.retryable else log.error)(
                "meta_capi_failed",
                **ctx,
                status=status,
                code=error.code,
                subcode=error.subcode,
                fbtrace_id=error.fbtrace_id,
                retryable=error.retryable,
                auth_failed=error.auth_failed,
            )
            raise error
        if not isinstance(data, dict):
            log.warning("meta_capi_unconfirmed", **ctx, status=status, fbtrace_id=header_trace)
            return CapiResult(fbtrace_id=header_trace)
        return self._confirmed(ev.event_name, ctx, status, data, header_trace)

    async def _post(self, ev: CapiEvent, ctx: dict[str, Any]) -> tuple[int, str, str | None]:
        """(status, body, x-fb-trace-id) of the one POST; transport failures are retryable."""
        headers = {**self._auth(), "Content-Type": "application/json"}
        try:
            async with self._session.post(
                self._url, json=self.request_body(ev), headers=headers, timeout=self._timeout
            ) as resp:
                return (
                    resp.status,
                    await resp.text(errors="replace"),
                    clean_text(resp.headers.get("x-fb-trace-id")),
                )
        except TimeoutError:  # asyncio.TimeoutError is the same class on 3.11
            log.warning("meta_capi_failed", **ctx, status=None, error="timeout", retryable=True)
            raise CapiUnavailable(f"meta_capi {ev.event_name} timed out") from None
        except aiohttp.ClientError as exc:
            what = type(exc).__name__
            log.warning("meta_capi_failed", **ctx, status=None, error=what, retryable=True)
            raise CapiUnavailable(f"meta_capi {ev.event_name} transport error: {what}") from None

    def _confirmed(
        self,
        event_name: str,
        ctx: dict[str, Any],
        status: int,
        data: dict[str, Any],
        header_trace: str | None,
    ) -> CapiResult:
        """Meta's answer to a 2xx; taking no event at all is a refusal."""
        result = CapiResult.model_validate(data)
        if result.fbtrace_id is None and header_trace:
            result = result.model_copy(update={"fbtrace_id": header_trace})
        if result.events_received == 0:
            # Meta answered but took nothing: resending the same payload will not change that.
            log.error(
                "meta_capi_failed",
                **ctx,
                status=status,
                fbtrace_id=result.fbtrace_id,
                events_received=0,
                retryable=False,
            )
            raise CapiRejected(
                self._scrub(
                    f"meta_capi {event_name}: Meta received no event"
                    + (f" ({'; '.join(result.messages)[:_ERROR_DETAIL_MAX]})" if result.messages else "")
                    + (f" (fbtrace_id {result.fbtrace_id})" if result.fbtrace_id else "")
                ),
                status=status,
                fbtrace_id=result.fbtrace_id,
            )
        log.info(
            "meta_capi_sent",
            **ctx,
            status=status,
            fbtrace_id=result.fbtrace_id,
            events_received=result.events_received,
            messages=[m[:200] for m in result.messages[:5]],
        )
        return result

    @staticmethod
    def _coerce(event: CapiEvent | Mapping[str, Any]) -> CapiEvent:
        if isinstance(event, CapiEvent):
            return event
        try:
            return CapiEvent.model_validate(dict(event))
        except (ValidationError, TypeError, ValueError) as exc:
            fields = ""
            if isinstance(exc, ValidationError):
                fields = ", ".join(".".join(str(p) for p in e["loc"]) or "event" for e in exc.errors()[:3])
            # Field names only: the values may be exactly what must not be logged.
            raise CapiRejected(f"meta_capi: invalid event ({fields or 'not an event'})") from None

    def _scrub(self, text: str) -> str:
        token = self._token.get_secret_value()
        return text.replace(token, "[REDACTED]") if token else text

    def _error(
        self, event_name: str, status: int, raw: str, data: Any, header_trace: str | None
    ) -> CapiError:
        """Graph error JSON -> the leaf the outbox acts on (see `capi_error_for`)."""
        err = read_graph_error(
            data,
            raw,
            header_trace=header_trace,
            user_key="error_user_title",
            scrub=self._scrub,
            max_detail=_ERROR_DETAIL_MAX,
        )
        return capi_error_for(
            err.summary(f"meta_capi {event_name} failed", status),
            status=status,
            code=err.code,
            transient=err.transient,
            subcode=err.subcode,
            fbtrace_id=err.trace,
        )

    # -- doctor ---------------------------------------------------------------------

    async def probe(self, io: ProbeIO) -> ProbeResult:
        """Read the pixel's Graph node (`?fields=name`), read-only."""
        return await probe_pixel(io, node_url=self._node_url, headers=self._auth())


__all__ = ["MetaCapiClient", "MetaCapiConfig"]
