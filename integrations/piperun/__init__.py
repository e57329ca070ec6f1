"""PipeRun CRM: the client, the lead card and its texts, and the idempotent "hot lead ->
deal" sync. One module per role:

- `schema`: PipeRun's records (frozen) and the bodies we send;
- `identity`: which CRM records are the lead's own (our reference), phones, PII redaction;
- `client`: one HTTP attempt per call, typed errors (`errors`), the doctor's probe (`probe`);
- `card` and `texts`: what the sellers read (lead card, deal title, note);
- `sync`: `sync_lead`, step by step;
- `deal_notes`: one more note on the lead's deal (a quote request), posted once;
- `activities`: a booked meeting as an activity on the deal, owned by the seller.

Standalone building block for the CRM issue: persisting the ids, ordering per lead and
retrying belong to the caller (the outbox).
"""

from integrations.piperun.activities import MeetingActivity, pick_meeting_type, upsert_meeting_activity
from integrations.piperun.card import CrmLink, LeadCard
from integrations.piperun.client import DEFAULT_API_URL, Pace, PipeRunClient, PipeRunConfig
from integrations.piperun.deal_notes import post_deal_note, render_deal_note
from integrations.piperun.errors import PipeRunAuthFailed, PipeRunError, PipeRunRejected, PipeRunUnavailable
from integrations.piperun.identity import EXTERNAL_CODE_PREFIX, external_code_for, phone_key, reference_marker
from integrations.piperun.schema import (
    DEAL_TEMPERATURE,
    CompanyCreate,
    DealCreate,
    DealUpdate,
    NoteCreate,
    NoteUpdate,
    PersonCreate,
    PersonUpdate,
    PipeRunCompany,
    PipeRunDeal,
    PipeRunNote,
    PipeRunPerson,
)
from integrations.piperun.sync import ProgressCallback, is_card_note, sync_lead
from integrations.piperun.texts import (
    PipeRunTexts,
    PipeRunTextsError,
    load_piperun_texts,
    render_deal_title,
    render_note,
)

__all__ = [
    "DEAL_TEMPERATURE",
    "DEFAULT_API_URL",
    "EXTERNAL_CODE_PREFIX",
    "CompanyCreate",
    "CrmLink",
    "DealCreate",
    "DealUpdate",
    "LeadCard",
    "MeetingActivity",
    "NoteCreate",
    "NoteUpdate",
    "Pace",
    "PersonCreate",
    "PersonUpdate",
    "PipeRunAuthFailed",
    "PipeRunClient",
    "PipeRunConfig",
    "PipeRunCompany",
    "PipeRunDeal",
    "PipeRunError",
    "PipeRunNote",
    "PipeRunPerson",
    "PipeRunRejected",
    "PipeRunTexts",
    "PipeRunTextsError",
    "PipeRunUnavailable",
    "ProgressCallback",
    "external_code_for",
    "is_card_note",
    "load_piperun_texts",
    "phone_key",
    "pick_meeting_type",
    "post_deal_note",
    "reference_marker",
    "render_deal_note",
    "render_deal_title",
    "render_note",
    "sync_lead",
    "upsert_meeting_activity",
]
