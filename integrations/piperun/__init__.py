"""PipeRun CRM: the client, the lead card and its texts, and the idempotent "hot lead ->
deal" sync. One module per role:

- `schema`: PipeRun's records (frozen) and the bodies we send;
- `identity`: who a lead is in the CRM (phone spellings, our external code), PII redaction;
- `client`: one HTTP attempt per call, typed errors (`errors`), the doctor's probe (`probe`);
- `card` and `texts`: what the sellers read (lead card, deal title, note);
- `sync`: `sync_lead`, step by step.

Standalone building block for the CRM issue: persisting the ids, ordering per lead and
retrying belong to the caller (the outbox).
"""

from integrations.piperun.card import CrmLink, LeadCard
from integrations.piperun.client import DEFAULT_API_URL, PipeRunClient, PipeRunConfig
from integrations.piperun.errors import PipeRunAuthFailed, PipeRunError, PipeRunRejected, PipeRunUnavailable
from integrations.piperun.identity import EXTERNAL_CODE_PREFIX, external_code_for, phone_key, phone_variants
from integrations.piperun.schema import (
    DEAL_TEMPERATURE,
    CompanyCreate,
    DealCreate,
    NoteCreate,
    PersonCreate,
    PipeRunCompany,
    PipeRunDeal,
    PipeRunNote,
    PipeRunPerson,
)
from integrations.piperun.sync import ProgressCallback, sync_lead
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
    "LeadCard",
    "NoteCreate",
    "PersonCreate",
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
    "load_piperun_texts",
    "phone_key",
    "phone_variants",
    "render_deal_title",
    "render_note",
    "sync_lead",
]
