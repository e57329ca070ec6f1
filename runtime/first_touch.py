"""A lead who filled a form: what their first turn does.

The form arrives as the lead's first message (kind `form`). Its answers enter the
profile before anything else, deterministically, with the form as their source, so the
agent never asks for them again. Then one of three things happens:

- the lead is already talking to us (or to a person): the answers are merged, nobody
  writes twice;
- the first touch channel is the WhatsApp Cloud API: the lead never wrote, so no window
  is open and only the approved `first_touch` template can reach them;
- otherwise the agent writes a short first message from the answers.

The first touch is marked for the delivery: the number is checked on WhatsApp first
(where the provider can tell), and a form older than LEAD_FIRST_TOUCH_MAX_AGE_MIN that
arrives outside business hours waits for the next opening instead of arriving at 3 a.m.
The form itself goes to the sellers in Chatwoot as a private note (runtime/commit.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from agent.scoring import ScoringRules, score_lead
from core.forms import FormSubmission
from core.lead import LeadProfile, LeadUpdate, merge_lead
from core.models import MessageKind
from core.outbox import Reengage, SendText
from core.records import InboundRecord, LeadRecord, OutboxItem, TurnCommit
from runtime.templates import FIRST_TOUCH

if TYPE_CHECKING:  # the agent (langgraph, openai) is loaded only where turns run
    from agent.graph import OpeningHours

_construct: Callable[..., LeadUpdate] = LeadUpdate.model_construct

# The Cloud API's first touch is a template, never free text.
TEMPLATE_ONLY_CHANNELS = frozenset({"whatsapp_cloud"})


@dataclass(frozen=True, slots=True)
class FirstTouchConfig:
    max_age: timedelta = timedelta(minutes=60)
    # How recently the lead (or we) must have written for the form to join a conversation
    # instead of opening one.
    active_within: timedelta = timedelta(hours=24)


def forms_of(records: Sequence[InboundRecord]) -> list[tuple[str, FormSubmission]]:
    return [
        (r.message.provider_message_id, r.message.form)
        for r in records
        if r.message.kind is MessageKind.FORM and r.message.form is not None
    ]


def only_forms(records: Sequence[InboundRecord]) -> bool:
    return all(r.message.kind is MessageKind.FORM for r in records)


def merged_profile(base: LeadProfile, forms: list[tuple[str, FormSubmission]], at: datetime) -> LeadProfile:
    """The form's answers in the profile, each with the form as its source; a value the
    profile's rules refuse (a malformed UF, a CNPJ with a wrong check digit) is dropped."""
    profile = base
    empty = dict.fromkeys(LeadUpdate.model_fields)
    for message_id, form in forms:
        values = {k: v for k, v in form.profile.items() if k in empty and k != "phone"}
        # Unvalidated on purpose: merge_lead normalises each value and drops what it refuses.
        update = _construct(**{**empty, **values})
        profile, _changed = merge_lead(profile, update, message_id=message_id, at=at)
    return profile


def in_conversation(lead: LeadRecord | None, now: datetime, config: FirstTouchConfig) -> bool:
    """Someone is already talking: the lead wrote lately, we did, a person owns the
    conversation or the lead was handed off. A form then adds data, not a greeting."""
    if lead is None:
        return False
    if lead.handoff_state or (lead.paused_until is not None and lead.paused_until > now):
        return True
    times = [t for t in (lead.last_inbound_at, lead.conversation_last_message_at) if t is not None]
    return bool(times) and now - max(times) <= config.active_within


def hold_until(
    forms: list[tuple[str, FormSubmission]],
    now: datetime,
    config: FirstTouchConfig,
    hours: OpeningHours | None,
) -> datetime | None:
    """When a stale form's first touch may go out (None: now). A fresh form is answered
    at once whatever the hour: the lead is holding the phone."""
    if hours is None or hours.is_open(now):
        return None
    newest = max(form.submitted_at for _id, form in forms)
    if now - newest <= config.max_age:
        return None
    opening: datetime = hours.next_opening(now)
    return opening


def rescored(commit: TurnCommit, profile: LeadProfile, rules: ScoringRules, message_count: int) -> None:
    """A commit the agent did not write (merge only, template): score the merged profile."""
    result = score_lead(profile, lead_message_count=message_count, rules=rules)
    commit.profile = profile.model_dump(mode="json")
    commit.score = result.score
    commit.temperature = result.temperature
    commit.score_reasons = result.reasons


def mark_first_touch(outbox: list[OutboxItem], not_before: datetime | None) -> None:
    """The agent's bubbles are the first touch: checked on WhatsApp, maybe held."""
    for item in outbox:
        if item.kind == SendText.KIND:
            item.payload["first_touch"] = True
            if not_before is not None:
                item.payload["not_before"] = not_before.isoformat()


def template_touch(commit: TurnCommit, not_before: datetime | None) -> OutboxItem:
    """The Cloud API's first touch: the `first_touch` template (or, without one, the
    sellers in Chatwoot), once per form."""
    touch = Reengage(
        channel=commit.channel,
        contact_id=commit.contact_id,
        contact_key=commit.contact_key,
        purpose=FIRST_TOUCH,
        **({"not_before": not_before.isoformat()} if not_before is not None else {}),
    )
    return touch.to_item(since=f"form-{commit.inbound_ids[0]}")
