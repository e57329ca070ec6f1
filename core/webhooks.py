"""The one webhook handler every channel shares: authenticate, parse, store, ack.

Nothing here waits on the LLM or an outbound call: the 200 means "stored durably",
and the runtime takes it from there.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from channels.base import WebhookRejected
from core.keys import CHANNELS, RUNNER, STORE
from core.logging import get_logger
from core.middlewares import json_error
from integrations.store.base import StoreUnavailable

log = get_logger(__name__)


def _replace_lone_surrogates(value: Any) -> Any:
    """Half of an emoji (a lone \\ud83d escape) is valid JSON but not storable text:
    keep the message, with U+FFFD where the broken character was."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_replace_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    return value


async def handle_webhook(request: web.Request, channel_name: str) -> web.Response:
    channel = request.app[CHANNELS][channel_name]
    store = request.app[STORE]
    runner = request.app[RUNNER]
    raw = await request.read()
    try:
        channel.authenticate(request, raw)
        try:
            payload = json.loads(raw.decode("utf-8"))
            if b"\\ud" in raw or b"\\uD" in raw:
                payload = _replace_lone_surrogates(payload)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            raise WebhookRejected(400, "body is not valid JSON") from None
        parsed = channel.parse(payload)
    except WebhookRejected as exc:
        log.info("webhook_rejected", channel=channel.name, status=exc.status, reason=exc.message)
        return json_error(exc.status, exc.message)
    accepted = duplicates = 0
    try:
        for event in parsed.ignored:
            if event.message is not None:
                await store.add_inbound(event.message, status="ignored", reason=event.reason)
        for message in parsed.messages:
            if await store.add_inbound(message):
                accepted += 1
                runner.notify(message.contact_key)
            else:
                duplicates += 1
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel=channel.name, error=str(exc))
        return json_error(503, "store unavailable, retry later")
    if parsed.ignored:
        log.debug("webhook_ignored", channel=channel.name, reasons=[e.reason for e in parsed.ignored])
    return web.json_response(
        {"status": "ok", "accepted": accepted, "duplicates": duplicates, "ignored": len(parsed.ignored)}
    )
