"""RD Station Marketing: its conversion webhook read into `FormSubmission`s (`schema`).

The web edge (web/rdstation_webhook.py) authenticates the POST and stores each form;
this package only reads RD's payload, so it knows nothing of HTTP or the store.
"""

from integrations.rdstation.schema import (
    RdBatch,
    RdConversion,
    RdConversionOrigin,
    RdLead,
    RdPayloadError,
    parse_rdstation_batch,
    parse_rdstation_conversion,
)

__all__ = [
    "RdBatch",
    "RdConversion",
    "RdConversionOrigin",
    "RdLead",
    "RdPayloadError",
    "parse_rdstation_batch",
    "parse_rdstation_conversion",
]
