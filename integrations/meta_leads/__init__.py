"""Meta Lead Ads: a lead who filled an Instant Form on Facebook or Instagram.

The `leadgen` Page webhook announces a lead by id (`schema.parse_leadgen_webhook`); the
answers are read from the Graph API with a Page access token (`client.MetaLeadsClient`,
typed `errors`, the doctor's `probe`); `graph_lead_submission` turns the lead into the
`FormSubmission` every form intake produces, its answers sorted by
prompts/lead_forms.toml (core/form_fields.py). Deciding when to fetch, storing and
retrying belong to the caller (the outbox). Nothing here imports `channels` or another
integration.
"""

from integrations.meta_leads.client import (
    DEFAULT_GRAPH_URL,
    DEFAULT_GRAPH_VERSION,
    LEAD_FIELDS,
    MetaLeadsClient,
    MetaLeadsConfig,
    retry_after_s,
)
from integrations.meta_leads.errors import (
    PERMISSION_CODES,
    RETRYABLE_CODES,
    TOKEN_CODES,
    MetaLeadNotFound,
    MetaLeadsAuthFailed,
    MetaLeadsError,
    MetaLeadsRejected,
    MetaLeadsUnavailable,
)
from integrations.meta_leads.schema import (
    MAX_WEBHOOK_ENTRIES,
    GraphFieldData,
    GraphLead,
    LeadgenEvent,
    parse_leadgen_webhook,
)
from integrations.meta_leads.submission import graph_lead_submission

__all__ = [
    "DEFAULT_GRAPH_URL",
    "DEFAULT_GRAPH_VERSION",
    "LEAD_FIELDS",
    "MAX_WEBHOOK_ENTRIES",
    "PERMISSION_CODES",
    "RETRYABLE_CODES",
    "TOKEN_CODES",
    "GraphFieldData",
    "GraphLead",
    "LeadgenEvent",
    "MetaLeadNotFound",
    "MetaLeadsAuthFailed",
    "MetaLeadsClient",
    "MetaLeadsConfig",
    "MetaLeadsError",
    "MetaLeadsRejected",
    "MetaLeadsUnavailable",
    "graph_lead_submission",
    "parse_leadgen_webhook",
    "retry_after_s",
]
