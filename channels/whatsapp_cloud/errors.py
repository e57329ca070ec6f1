"""What Meta's Graph errors mean for a WhatsApp Cloud send: retry, fix the token, drop
the recipient, or switch to a template.

Codes decide before HTTP statuses: Meta answers 400 for most of its rate limits, and 403
for some of them. Docs: support/error-codes and graph-api/guides/error-handling.
"""

from __future__ import annotations

from typing import Any

from channels import meta_common
from channels.errors import RecipientNotOnWhatsApp
from channels.meta_common import (
    MetaApiError,
    MetaAuthFailed,
    MetaInvalidRecipient,
    MetaRejected,
    MetaUnavailable,
    OutsideWindow,
)
from channels.provider_http import scrub
from channels.whatsapp_cloud.parse import NOT_ON_WHATSAPP_CODE, WINDOW_CODE
from core.errors import is_retryable_status

# Throttling and Meta-side trouble: the same request can succeed later.
#   1 API Unknown, 2 API Service, 4 app request limit, 17/32/613 Graph call limits,
#   80007 WABA rate limit, 130429 throughput, 131000 "something went wrong",
#   131016 service unavailable, 131056 business/consumer pair rate limit,
#   133004 server temporarily unavailable.
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613, 80007, 130429, 131000, 131016, 131056, 133004})
# Credentials: 0 AuthException, 10 permission denied, 190 token expired/invalid,
# 200-299 API permission. The operator must act; retrying only burns attempts.
AUTH_CODES = frozenset({0, 10, 190, *range(200, 300)})
# The recipient cannot receive: 131026 undeliverable (not on WhatsApp, old client, terms
# not accepted), 131030 not in the test allow-list, 131021 recipient is the sender.
INVALID_RECIPIENT_CODES = frozenset({131021, 131026, 131030})
# 131048 (spam rate limit) is deliberately permanent: retrying what Meta already flagged
# as spam lowers the number's quality further.

_ERROR_DETAIL_MAX = 300


class MetaNotOnWhatsApp(MetaInvalidRecipient, RecipientNotOnWhatsApp):
    """131026 "Message undeliverable": the number has no WhatsApp account (or an old
    client, or one that has not accepted the terms; Meta does not say which). Meta
    gives no lookup, so this refusal is how the runtime learns it."""


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _leaf(graph: meta_common.GraphError, status: int, lowered: str) -> type[MetaApiError]:
    code = graph.code
    if code in AUTH_CODES or (
        status in (401, 403) and code not in RETRYABLE_CODES and code not in INVALID_RECIPIENT_CODES
    ):
        return MetaAuthFailed
    if code in INVALID_RECIPIENT_CODES or (
        code in (100, 131009) and any(word in lowered for word in ("phone", "recipient", "'to'", '"to"'))
    ):
        return MetaInvalidRecipient
    if code in RETRYABLE_CODES or graph.transient or is_retryable_status(status):
        return MetaUnavailable
    return MetaRejected


def graph_error(op: str, status: int, raw: str, data: Any, secrets: list[str]) -> MetaApiError:
    """Turn Meta's Graph error JSON into the leaf the outbox acts on."""
    graph = meta_common.parse_graph_error(data, as_int=as_int)
    code, subcode, trace = graph.code, graph.subcode, graph.fbtrace_id

    parts = [p for p in (graph.message, graph.details) if p]
    if len(parts) == 2 and parts[1] in parts[0]:
        parts = parts[:1]
    detail = " - ".join(parts) if parts else (raw.strip() if not graph.present else "")
    detail = scrub(detail, secrets)[:_ERROR_DETAIL_MAX]

    code_text = ""
    if code is not None:
        code_text = f", code {code}" + (f"/{subcode}" if subcode is not None else "")
    trace_text = f" (fbtrace_id {trace})" if trace else ""

    def text(prefix: str) -> str:
        body = f"{prefix}: {detail}" if detail else prefix
        return body + trace_text

    meta: dict[str, Any] = {"status": status, "code": code, "subcode": subcode, "fbtrace_id": trace}
    if code == WINDOW_CODE:
        return OutsideWindow(
            text(
                f"whatsapp_cloud {op} refused: outside the 24-hour customer-service window "
                f"(HTTP {status}{code_text}); send an approved template instead"
            ),
            **meta,
        )
    if code == NOT_ON_WHATSAPP_CODE:
        return MetaNotOnWhatsApp(
            text(f"whatsapp_cloud {op} refused: the recipient is not on WhatsApp (HTTP {status}{code_text})"),
            **meta,
        )
    leaf = _leaf(graph, status, detail.lower())
    return leaf(text(f"whatsapp_cloud {op} failed: HTTP {status}{code_text}"), **meta)
