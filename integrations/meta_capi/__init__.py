"""Meta Conversions API (CAPI): lead lifecycle events sent back to the ads that brought them.

Standalone building block for the "hot leads reach the CRM and the ads learn" issue. One
module per role: `models` (the event and Meta's answer, frozen), `hashing` (customer
information normalised and hashed: only hashes leave it), `event` (which event a stage
becomes and on which path), `client` (one POST per event, typed `errors`, the doctor's
`probe`). Deciding when to send, storing and retrying belong to the caller (the outbox).
Nothing here imports `channels`: integrations and channels stay independent.
"""

from integrations.meta_capi.client import MetaCapiClient, MetaCapiConfig
from integrations.meta_capi.errors import (
    AUTH_CODES,
    INVALID_PARAMETER_CODES,
    RETRYABLE_CODES,
    CapiAuthFailed,
    CapiError,
    CapiRejected,
    CapiUnavailable,
)
from integrations.meta_capi.event import (
    BUSINESS_MESSAGING_EVENTS,
    DEFAULT_LEAD_EVENT_SOURCE,
    LEAD_LOST_EVENT,
    STAGE_SETTING_NAMES,
    build_event,
    capi_event_id,
    crm_lead_id,
    messaging_channel_for,
    stage_enabled,
)
from integrations.meta_capi.hashing import (
    hash_user_data,
    normalize_city,
    normalize_country,
    normalize_email,
    normalize_external_id,
    normalize_name,
    normalize_phone,
    normalize_state,
    normalize_zip,
    sha256_hex,
    split_name,
)
from integrations.meta_capi.models import (
    CRM_EVENT_SOURCE,
    LEAD_ID,
    ActionSource,
    CapiCustomData,
    CapiEvent,
    CapiRequest,
    CapiResult,
    CapiUserData,
    LeadStage,
    MessagingChannel,
    QualifiedEventName,
)

__all__ = [
    "AUTH_CODES",
    "BUSINESS_MESSAGING_EVENTS",
    "CRM_EVENT_SOURCE",
    "DEFAULT_LEAD_EVENT_SOURCE",
    "INVALID_PARAMETER_CODES",
    "LEAD_ID",
    "LEAD_LOST_EVENT",
    "RETRYABLE_CODES",
    "STAGE_SETTING_NAMES",
    "ActionSource",
    "CapiAuthFailed",
    "CapiCustomData",
    "CapiError",
    "CapiEvent",
    "CapiRejected",
    "CapiRequest",
    "CapiResult",
    "CapiUnavailable",
    "CapiUserData",
    "LeadStage",
    "MessagingChannel",
    "MetaCapiClient",
    "MetaCapiConfig",
    "QualifiedEventName",
    "build_event",
    "capi_event_id",
    "crm_lead_id",
    "hash_user_data",
    "messaging_channel_for",
    "normalize_city",
    "normalize_country",
    "normalize_email",
    "normalize_external_id",
    "normalize_name",
    "normalize_phone",
    "normalize_state",
    "normalize_zip",
    "sha256_hex",
    "split_name",
    "stage_enabled",
]
