"""Every table, column, rpc function and parameter the Supabase store names.

tests/store/test_supabase_schema_names.py checks each of them against the migrated
schema, and checks that the store's source names nothing else: a renamed column or a
function a migration forgot fails there, not in production with a PGRST202.
"""

from __future__ import annotations

# Columns read or written through table requests or read from rows the functions return.
LEAD_COLUMNS = (
    "id",
    "contact_key",
    "channel",
    "contact_id",
    "phone",
    "name",
    "profile",
    "score",
    "temperature",
    "score_reasons",
    "lead_message_count",
    "opted_out",
    "created_at",
    "updated_at",
    "handoff_state",
    "handoff_reason",
    "handoff_summary",
    "handoff_at",
    "summary",
    "last_inbound_at",
    "paused_until",
    "referral",
    "chatwoot_contact_id",
    "chatwoot_source_id",
    "chatwoot_conversation_id",
    "chatwoot_conversation_resolved",
    "crm_person_id",
    "crm_company_id",
    "crm_deal_id",
)
INBOUND_COLUMNS = ("id", "message", "attempts", "received_at", "contact_key", "status")
OUTBOX_COLUMNS = (
    "id",
    "kind",
    "order_key",
    "idempotency_key",
    "payload",
    "status",
    "attempts",
    "last_error",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "claimed_by",
    "lease_expires_at",
)
MESSAGE_COLUMNS = (
    "id",
    "direction",
    "kind",
    "text",
    "created_at",
    "provider_message_id",
    "status",
    "error",
    "chatwoot_message_id",
)
FOLLOWUP_COLUMNS = ("id", "contact_key", "attempt", "due_at", "scheduled_at", "status", "reason")
SELLER_ASSIGNMENT_COLUMNS = ("contact_key", "seller_key")
TABLES: dict[str, tuple[str, ...]] = {
    "leads": LEAD_COLUMNS,
    "inbound": INBOUND_COLUMNS,
    "outbox": OUTBOX_COLUMNS,
    "messages": MESSAGE_COLUMNS,
    "followups": FOLLOWUP_COLUMNS,
    "seller_assignments": SELLER_ASSIGNMENT_COLUMNS,
}

# Every rpc function this store calls, with the parameters it passes.
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "sdr_add_inbound": (
        "p_channel",
        "p_provider_message_id",
        "p_contact_key",
        "p_message",
        "p_status",
        "p_reason",
    ),
    "sdr_pending_contacts": (),
    "sdr_record_turn_failure": ("p_inbound_ids", "p_error"),
    "sdr_get_lead": ("p_contact_key", "p_chatwoot_conversation_id", "p_crm_deal_id"),
    "sdr_recent_messages": ("p_contact_key", "p_limit"),
    "sdr_commit_turn_once": ("p_request_id", "p_commit"),
    "sdr_claim_outbox_for": ("p_owner", "p_limit", "p_now", "p_lease_seconds"),
    "sdr_release_outbox": ("p_owner",),
    "sdr_next_outbox_due": (),
    "sdr_outbox_stats": (),
    "sdr_replay_dead": ("p_kind",),
    "sdr_replay_outbox": ("p_id",),
    "sdr_defer_outbox": ("p_id", "p_next_attempt_at", "p_reason"),
    "sdr_enqueue": ("p_kind", "p_order_key", "p_idempotency_key", "p_payload"),
    "sdr_lease_contact": ("p_contact_key", "p_owner", "p_lease_seconds"),
    "sdr_release_contact": ("p_contact_key", "p_owner"),
    "sdr_claim_ready_contacts": (
        "p_owner",
        "p_limit",
        "p_quiet_seconds",
        "p_max_wait_seconds",
        "p_lease_seconds",
    ),
    "sdr_mark_message_sent": ("p_message_id", "p_provider_message_id"),
    "sdr_record_delivery_status": ("p_provider_message_id", "p_status", "p_error"),
    "sdr_message_contact": ("p_provider_message_id",),
    "sdr_request_handoff": ("p_contact_key", "p_reason", "p_summary"),
    "sdr_note_business_message": ("p_contact_key", "p_provider_message_id", "p_text", "p_pause_until"),
    "sdr_is_own_chatwoot_message": ("p_chatwoot_message_id", "p_conversation_id", "p_text"),
    "sdr_record_human_reply": ("p_contact_key", "p_text", "p_chatwoot_message_id"),
    "sdr_lead_quotes": ("p_contact_key",),
    "sdr_lead_technical_questions": ("p_contact_key",),
    "sdr_erase_lead": ("p_contact_key", "p_order_keys"),
    "sdr_is_erased": ("p_contact_key",),
    "sdr_lead_counts": (),
    "sdr_lead_by_chatwoot_contact": ("p_chatwoot_contact_id",),
    "sdr_record_referral": ("p_contact_key", "p_referral"),
    "sdr_take_rate_slot": ("p_name", "p_rate_per_s", "p_burst", "p_now"),
    "sdr_assign_seller": ("p_contact_key", "p_candidates", "p_now"),
}
