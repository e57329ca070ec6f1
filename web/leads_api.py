"""POST /api/leads: any website form, landing page or automation tool hands the bot a lead.

The lead is stored as its first message and answered on WhatsApp within seconds
(web/form_intake.py). Closed by default: without `LEADS_API_KEY` every call gets 403,
like /webhooks/crm without its secret. Authenticate with either

- `Authorization: Bearer <LEADS_API_KEY>` (a server or an automation tool), or
- `X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with LEADS_API_KEY>`
  (the key never travels), both compared in constant time.

Body: a JSON object (`Content-Type: application/json`, at most 64 KiB) of the fields of
`LeadsApiBody`; `phone` is required (the first touch is on WhatsApp). An unknown
top-level key is refused with a 422 naming it, so a typo (`telefone`, `e-mail`) is seen
while the integration is set up rather than silently dropped; put free questions under
`answers`. Shapes are checked here (types, lengths); values are not: an e-mail, a UF or a
CNPJ that does not validate is dropped by the profile merge, never the lead with it.
Only the phone must be a number with area code (DDD) or the call is refused (422).

Idempotency: the `Idempotency-Key` header, else the body's `external_id`, else a hash of
the normalised body (the same form submitted twice is one lead). A repeat answers
`200 {"status": "duplicate", "lead_id": ...}` with the same lead id; a new form
`202 {"status": "accepted", "lead_id": "whatsapp:55..."}`. The store down: 503 with
Retry-After, to retry with the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from core.errors import StoreUnavailable, WebhookRejected
from core.forms import (
    MAX_ANSWER_CHARS,
    MAX_FORM_ANSWERS,
    FormAnswer,
    FormAttribution,
    FormSource,
    FormSubmission,
)
from core.lead_fields import normalize_phone
from core.logging import get_logger
from core.secret_compare import secrets_match
from web.form_intake import store_form_lead
from web.keys import CLOCK, SETTINGS
from web.middlewares import json_error
from web.webhooks import _decode

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_KEY_CHARS = 200
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_CHARS}}}")
RETRY_AFTER_S = "10"


def _scalar_text(value: Any) -> Any:
    """Automation tools send numbers as numbers (a phone, a volume): read them as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _optional_text(value: Any) -> Any:
    """A blank field of a form is a field not filled."""
    value = _scalar_text(value)
    return None if isinstance(value, str) and not value.strip() else value


Short = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_optional_text)]
Url = Annotated[Annotated[str, Field(max_length=2000)] | None, BeforeValidator(_optional_text)]
AnswerValue = str | int | float | bool | None


class LeadsApiBody(BaseModel):
    """One filled form. Unknown top-level keys are refused (see the module doc)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: Annotated[Annotated[str, Field(max_length=40)] | None, BeforeValidator(_scalar_text)]
    name: Short = None
    email: Short = None
    company: Short = None
    city: Short = None
    state: Short = None
    cnpj: Short = None
    segment: Short = None
    product: Short = None
    volume: Short = None
    message: Annotated[Annotated[str, Field(max_length=4000)] | None, BeforeValidator(_optional_text)] = None
    source: Short = None
    external_id: Short = None
    page_url: Url = None
    utm_source: Short = None
    utm_medium: Short = None
    utm_campaign: Short = None
    utm_term: Short = None
    utm_content: Short = None
    answers: Annotated[dict[str, AnswerValue], Field(default_factory=dict, max_length=MAX_FORM_ANSWERS)]


# Body field -> LeadProfile field.
PROFILE_FIELDS = {
    "name": "name",
    "email": "email",
    "company": "company",
    "city": "city",
    "state": "state",
    "cnpj": "cnpj",
    "segment": "segment",
    "product": "product_interest",
    "volume": "volume",
}


def _authenticated(request: web.Request, key: str, raw: bytes) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return secrets_match(token.strip(), key)
    signature = request.headers.get("X-Signature-256", "")
    if signature.lower().startswith("sha256="):
        expected = hmac.new(key.encode("utf-8"), raw, hashlib.sha256).hexdigest()
        return secrets_match(signature[len("sha256=") :].strip().lower(), expected)
    return False


async def _read_bounded(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"request body too large: at most {MAX_BODY_BYTES // 1024} KiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise WebhookRejected(413, f"request body too large: at most {MAX_BODY_BYTES // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_content_type(request: web.Request) -> None:
    if "Content-Type" not in request.headers:
        return  # curl without -H: read it as JSON anyway
    mime = request.content_type
    if mime != "application/json" and not mime.endswith("+json"):
        raise WebhookRejected(415, "send the lead as JSON: Content-Type: application/json")


def _validation_message(exc: ValidationError) -> str:
    """Each bad field with pydantic's message (never the value sent: it may be a secret)."""
    unknown = sorted(
        str(e["loc"][0])[:40] for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]
    )
    problems = [
        f"{'.'.join(str(p)[:40] for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors()
        if e["type"] != "extra_forbidden"
    ]
    if unknown:
        known = ", ".join(LeadsApiBody.model_fields)
        problems.insert(
            0, f"unknown field(s) {', '.join(unknown)} (known: {known}; free questions go in answers)"
        )
    return "invalid lead: " + "; ".join(problems)


def _parse(raw: bytes) -> LeadsApiBody:
    payload = _decode(raw)  # 400: not JSON
    if not isinstance(payload, dict):
        raise WebhookRejected(422, "the body must be a JSON object with at least a phone")
    try:
        return LeadsApiBody.model_validate(payload)
    except ValidationError as exc:
        raise WebhookRejected(422, _validation_message(exc)) from None


def _idempotency_key(request: web.Request, body: LeadsApiBody) -> str:
    header = request.headers.get("Idempotency-Key", "").strip()
    if header:
        if not _KEY.fullmatch(header):
            raise WebhookRejected(422, f"Idempotency-Key: 1 to {MAX_KEY_CHARS} visible ASCII characters")
        return header
    if body.external_id:
        return body.external_id
    return "body:" + _body_hash(body)


def _body_hash(body: LeadsApiBody) -> str:
    """The same form twice hashes the same: spacing, key order and the phone's spelling
    (`+55 (11) 9...` or `119...`) do not count."""
    fields = body.model_dump(exclude_none=True)
    normalised: dict[str, Any] = {
        k: " ".join(v.split()).casefold() if isinstance(v, str) else v for k, v in fields.items()
    }
    with contextlib.suppress(ValueError):  # a bad phone is refused later with its own message
        normalised["phone"] = normalize_phone(body.phone) or body.phone
    canonical = json.dumps(normalised, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _answer(question: str, value: AnswerValue) -> FormAnswer | None:
    if value is None or isinstance(value, str) and not value.strip():
        return None
    text = ("sim" if value else "não") if isinstance(value, bool) else str(value).strip()
    return FormAnswer(question=question.strip()[:200], answer=text[:MAX_ANSWER_CHARS])


def _submission(request: web.Request, body: LeadsApiBody, external_id: str) -> FormSubmission:
    profile = {
        target: value for name, target in PROFILE_FIELDS.items() if (value := getattr(body, name)) is not None
    }
    answers = [a for q, v in body.answers.items() if q.strip() and (a := _answer(q, v)) is not None]
    return FormSubmission(
        source=FormSource.API,
        external_id=external_id,
        submitted_at=request.app[CLOCK](),
        phone=body.phone,
        profile={k: v for k, v in profile.items() if v},
        answers=answers,
        attribution=FormAttribution(
            form_name=body.source,
            page_url=body.page_url,
            utm_source=body.utm_source,
            utm_medium=body.utm_medium,
            utm_campaign=body.utm_campaign,
            utm_term=body.utm_term,
            utm_content=body.utm_content,
        ),
        message=body.message or None,
    )


async def handle_leads_api(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.leads_api_key is None:
        return json_error(403, "leads API disabled: set LEADS_API_KEY")
    try:
        raw = await _read_bounded(request)
        if not _authenticated(request, settings.leads_api_key.get_secret_value(), raw):
            raise WebhookRejected(
                401,
                "invalid or missing credentials: Authorization: Bearer <LEADS_API_KEY> or X-Signature-256",
            )
        _check_content_type(request)
        body = _parse(raw)
        submission = _submission(request, body, _idempotency_key(request, body))
        stored = await store_form_lead(request.app, submission)
    except WebhookRejected as exc:  # ours, and the phone's (missing, or not a number with DDD)
        log.info("leads_api_rejected", status=exc.status, reason=exc.message[:300])
        return json_error(exc.status, exc.message)
    except StoreUnavailable as exc:
        log.error("webhook_store_unavailable", channel="leads_api", error=str(exc))
        response = json_error(503, "store unavailable, retry later with the same Idempotency-Key")
        response.headers["Retry-After"] = RETRY_AFTER_S
        return response
    if stored.duplicate:
        return web.json_response({"status": "duplicate", "lead_id": stored.lead_id}, status=200)
    return web.json_response({"status": "accepted", "lead_id": stored.lead_id}, status=202)
