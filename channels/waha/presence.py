"""Subscribing to a lead's chat presence on WAHA, so their next burst comes with it.

WAHA sends `presence.update` only for chats the client subscribed to:
`POST /api/{session}/presence/{chatId}/subscribe`, no body, X-Api-Key; 201 with no content
(OpenAPI operationId PresenceController_subscribe, static/swagger/openapi.json 2026.7.1 in
github.com/devlikeapro/waha-docs; content/docs/how-to/presence: WEBJS, WPP, NOWEB and
GOWS). An engine without it answers 422 "The method is not implemented by the engine."
(NotImplementedByEngineError, src/core/exceptions.ts in github.com/devlikeapro/waha); a
WAHA older than the route answers NestJS's 404 "Cannot POST ...". Either turns the
feature off for the process: asking again would only get the same answer.

A subscription lives in the WAHA session (NOWEB keeps its list in memory), so a session
that reports WORKING again may have lost them: `forget` makes every lead due again.

Best effort throughout: one short call per lead per `ttl_s`, never retried in a loop, a
failure logged once (contact masked, the API key scrubbed) and never raised.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import aiohttp

from channels.waha.refusal import refusal_detail
from core.logging import get_logger
from core.models import mask_phone

log = get_logger(__name__)

# A lead's subscription is asked again after this long: WhatsApp may have dropped it.
SUBSCRIBE_TTL_S = 6 * 3600.0
# After a failure that may pass (timeout, 5xx, a session not ready), the lead's next
# message after this long tries once more.
RETRY_AFTER_S = 600.0
# Leads remembered at most; the oldest are forgotten first (and only re-subscribed).
MAX_CHATS = 20_000
# Never holds anything, but a slow WAHA must not pile calls up either.
SUBSCRIBE_TIMEOUT_S = 3.0

# "The method is not implemented by the engine.", "... is available only in Plus
# version", NestJS's "Cannot POST /api/..." of a WAHA without the route.
_UNSUPPORTED = re.compile(r"not implemented|only in plus|cannot post", re.IGNORECASE)
_SESSION_NOT_READY = re.compile(r"session status is not as expected", re.IGNORECASE)


class PresenceSubscriptions:
    """Which chats this process subscribed to lately, and whether it still tries at all."""

    def __init__(
        self,
        *,
        enabled: bool,
        ttl_s: float = SUBSCRIBE_TTL_S,
        retry_s: float = RETRY_AFTER_S,
        max_chats: int = MAX_CHATS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._ttl_s = ttl_s
        self._retry_s = retry_s
        self._max_chats = max(1, max_chats)
        self._now = now
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def due(self, chat_id: str) -> bool:
        """True claims the chat for one subscribe call (until `ttl_s` from now); False
        when it was claimed lately or the feature is off."""
        if not self.enabled:
            return False
        now = self._now()
        until = self._until.get(chat_id)
        if until is not None and until > now:
            return False
        self._until[chat_id] = now + self._ttl_s
        self._until.move_to_end(chat_id)
        while len(self._until) > self._max_chats:
            self._until.popitem(last=False)
        return True

    def retry_soon(self, chat_id: str) -> None:
        if chat_id in self._until:
            self._until[chat_id] = self._now() + self._retry_s

    def forget(self) -> None:
        """The WAHA session (re)started: its subscriptions may be gone."""
        self._until.clear()

    def turn_off(self, status: int, detail: str) -> None:
        if self.enabled:
            self.enabled = False
            self._until.clear()
            log.warning(
                "waha_presence_subscribe_unsupported",
                status=status,
                detail=detail,
                action="presence subscriptions are off until the bot restarts; "
                "the quiet window works without presence",
            )

    async def subscribe(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        chat_id: str,
        headers: Mapping[str, str],
        timeout_s: float,
        secrets: Sequence[str],
    ) -> None:
        """POST the subscription once; never raises for WAHA's failures."""
        contact = mask_phone(chat_id)
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            # No redirects: the API key goes to WAHA_URL's origin and nowhere else.
            async with session.post(
                url, headers=dict(headers), timeout=timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = "" if 200 <= status < 300 else await resp.text(errors="replace")
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.retry_soon(chat_id)
            log.info("waha_presence_subscribe_failed", contact=contact, error="timeout")
            return
        except (aiohttp.ClientError, ValueError) as exc:
            self.retry_soon(chat_id)
            log.info("waha_presence_subscribe_failed", contact=contact, error=type(exc).__name__)
            return
        if 200 <= status < 300:
            log.debug("waha_presence_subscribed", contact=contact)
            return
        detail = refusal_detail(raw, secrets)
        self._failed(chat_id, contact, status, detail)

    def _failed(self, chat_id: str, contact: str, status: int, detail: str) -> None:
        if status == 501 or (status in (400, 404, 405, 422) and _UNSUPPORTED.search(detail)):
            self.turn_off(status, detail)
            return
        passing = status in (408, 429) or status >= 500 or bool(_SESSION_NOT_READY.search(detail))
        if passing:
            self.retry_soon(chat_id)
        auth_failed = status in (401, 403)
        (log.warning if auth_failed else log.info)(
            "waha_presence_subscribe_failed",
            contact=contact,
            status=status,
            detail=detail,
            auth_failed=auth_failed,
            retry_in_s=self._retry_s if passing else self._ttl_s,
        )
