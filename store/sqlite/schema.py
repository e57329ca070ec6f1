"""The SQLite schema, and how an existing database is brought up to it on open.

Every statement is idempotent (`IF NOT EXISTS`, columns added only when missing), so
opening a database of any earlier release upgrades it in place, with no migration table.
"""

from __future__ import annotations

import sqlite3

from store.sqlite.outbox_order import apply_claim_order

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY,
    contact_key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    phone TEXT,
    name TEXT,
    profile TEXT NOT NULL DEFAULT '{}',
    score INTEGER NOT NULL DEFAULT 0,
    temperature TEXT NOT NULL DEFAULT 'frio',
    score_reasons TEXT NOT NULL DEFAULT '[]',
    lead_message_count INTEGER NOT NULL DEFAULT 0,
    opted_out INTEGER NOT NULL DEFAULT 0,
    opted_out_at TEXT,
    handoff_state TEXT,
    handoff_reason TEXT,
    handoff_summary TEXT,
    handoff_at TEXT,
    summary TEXT,
    last_inbound_at TEXT,
    paused_until TEXT,
    chatwoot_contact_id INTEGER,
    chatwoot_source_id TEXT,
    chatwoot_conversation_id INTEGER,
    chatwoot_conversation_resolved INTEGER NOT NULL DEFAULT 0,
    crm_person_id INTEGER,
    crm_company_id INTEGER,
    crm_deal_id INTEGER,
    referral TEXT,
    utm TEXT,
    won_at TEXT,
    handed_off_at TEXT,
    handed_off_reason TEXT,
    first_in_at TEXT,
    first_reply_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'bot',
    started_at TEXT NOT NULL,
    last_message_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_lead ON conversations(lead_id, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    kind TEXT NOT NULL,
    text TEXT,
    provider_message_id TEXT,
    status TEXT,
    error TEXT,
    media_url TEXT,
    chatwoot_message_id INTEGER,
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_lead ON messages(lead_id, id);
CREATE INDEX IF NOT EXISTS messages_provider_id ON messages(provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbound (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    contact_key TEXT NOT NULL,
    message TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'ignored')),
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    received_at TEXT NOT NULL,
    processed_at TEXT,
    UNIQUE (channel, provider_message_id)
);
CREATE INDEX IF NOT EXISTS inbound_pending ON inbound(contact_key, id) WHERE status = 'pending';
-- Waiting messages in arrival order, for the contacts ready for a turn (schedule.py).
CREATE INDEX IF NOT EXISTS inbound_waiting ON inbound(id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    order_key TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'inflight', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 2
);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox(order_key, id) WHERE status IN ('pending', 'inflight');
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS orcamentos (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    conversation_id INTEGER REFERENCES conversations(id),
    products TEXT NOT NULL,
    quantity TEXT,
    summary TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'novo',
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orcamentos_lead ON orcamentos(lead_id, id);
CREATE TABLE IF NOT EXISTS technical_questions (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    conversation_id INTEGER REFERENCES conversations(id),
    question TEXT NOT NULL,
    context TEXT,
    status TEXT NOT NULL DEFAULT 'aberta',
    turn_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS technical_questions_lead ON technical_questions(lead_id, id);
CREATE TABLE IF NOT EXISTS followups (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id),
    contact_key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    due_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'cancelled')),
    reason TEXT,
    scheduled_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS followups_due ON followups(due_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS followups_lead ON followups(lead_id) WHERE status = 'pending';
-- The model usage of each committed turn (issue 20's cost figures); goes with the lead.
-- (Before `tombstones`: it has a rowid, see the note above `meetings`.)
CREATE TABLE IF NOT EXISTS turn_usage (
    id INTEGER PRIMARY KEY,
    lead_id INTEGER NOT NULL REFERENCES leads(id) ON DELETE CASCADE,
    turn_id TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    transcription_seconds REAL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turn_usage_created ON turn_usage(created_at);
CREATE INDEX IF NOT EXISTS turn_usage_lead ON turn_usage(lead_id);
CREATE TABLE IF NOT EXISTS turn_leases (
    contact_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erasures (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    erased_at TEXT NOT NULL,
    lead_created_at TEXT,
    temperature TEXT,
    rows_deleted TEXT NOT NULL
);
-- Keyed hashes (HMAC-SHA256) of erased contact keys and provider message ids, nothing else.
CREATE TABLE IF NOT EXISTS tombstones (
    hash TEXT PRIMARY KEY
) WITHOUT ROWID;
-- The next free send slot of each provider rate limit (GCRA), for processes sharing the file.
CREATE TABLE IF NOT EXISTS rate_slots (
    name TEXT PRIMARY KEY,
    next_slot_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
-- The sellers' round-robin (prompts/sellers.toml): the order of each one's latest lead.
CREATE TABLE IF NOT EXISTS seller_rotation (
    seller_key TEXT PRIMARY KEY,
    rotation_seq INTEGER,
    last_assigned_at TEXT
) WITHOUT ROWID;
-- The seller of each lead; erased with the lead.
CREATE TABLE IF NOT EXISTS seller_assignments (
    contact_key TEXT PRIMARY KEY,
    seller_key TEXT NOT NULL,
    assigned_at TEXT NOT NULL
) WITHOUT ROWID;
-- Meetings booked on a seller's calendar, keyed by our own event id; erased with the lead.
-- (WITHOUT ROWID, as every table after `tombstones`: tests/store/test_postgres_schema.py
-- reads the tables that end in a bare ");" and compares them with Postgres.)
CREATE TABLE IF NOT EXISTS meetings (
    event_id TEXT PRIMARY KEY,
    contact_key TEXT NOT NULL,
    seller_key TEXT NOT NULL,
    calendar_id TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    meet_url TEXT,
    html_link TEXT,
    reminders_sent TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meetings_lead ON meetings(contact_key, starts_at);
CREATE INDEX IF NOT EXISTS meetings_upcoming ON meetings(starts_at) WHERE status = 'scheduled';
"""

# Columns added after the first release: an existing database gets them on open.
ADDED_COLUMNS = {
    "messages": {"media_url": "TEXT", "error": "TEXT", "chatwoot_message_id": "INTEGER"},
    "leads": {
        "opted_out_at": "TEXT",
        "handoff_state": "TEXT",
        "handoff_reason": "TEXT",
        "handoff_summary": "TEXT",
        "handoff_at": "TEXT",
        "summary": "TEXT",
        "last_inbound_at": "TEXT",
        "paused_until": "TEXT",
        "chatwoot_contact_id": "INTEGER",
        "chatwoot_source_id": "TEXT",
        "chatwoot_conversation_id": "INTEGER",
        "chatwoot_conversation_resolved": "INTEGER NOT NULL DEFAULT 0",
        "crm_person_id": "INTEGER",
        "crm_company_id": "INTEGER",
        "crm_deal_id": "INTEGER",
        # Issue 20's funnel: a website form's UTMs, and when the CRM said the deal was won.
        "utm": "TEXT",
        "won_at": "TEXT",
        # The first handoff, kept when the bot gets the lead back (handoff_at is cleared):
        # written beside handoff_at by turns.py and people.py (Postgres: a trigger).
        "handed_off_at": "TEXT",
        "handed_off_reason": "TEXT",
        # The lead's first message and the bot's first reply (time to first reply), kept
        # by the turn's commit so the dashboard reads them without a probe per lead.
        "first_in_at": "TEXT",
        "first_reply_at": "TEXT",
    },
    # Claimed in this order under a flood (core/outbox.py; set by a trigger, outbox_order.py).
    "outbox": {"priority": "INTEGER NOT NULL DEFAULT 2"},
}


# Indexes on columns that older databases only get from ADDED_COLUMNS.
_LATE_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_chatwoot_id ON messages(chatwoot_message_id)"
    " WHERE chatwoot_message_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS leads_chatwoot_conversation ON leads(chatwoot_conversation_id)",
    # /metrics reads these on every scrape: an index each keeps that off the table scan.
    "CREATE INDEX IF NOT EXISTS outbox_status_kind ON outbox(status, kind)",
    "CREATE INDEX IF NOT EXISTS leads_temperature ON leads(temperature)",
    "CREATE INDEX IF NOT EXISTS leads_crm_deal ON leads(crm_deal_id) WHERE crm_deal_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS leads_chatwoot_contact ON leads(chatwoot_contact_id)"
    " WHERE chatwoot_contact_id IS NOT NULL",
    # The dashboard's aggregates (store/sqlite/analytics.py) read a period of leads by
    # creation time (their first messages are on the row: no probe of the big tables).
    "CREATE INDEX IF NOT EXISTS leads_created ON leads(created_at)",
)


# A lead's first message is its first inbound row that was not ignored (a form: when it
# was received), else its first incoming message; the bot's first reply is its first
# outgoing message a person did not write (turn_id 'human').
FIRST_MESSAGES_BACKFILL = """
UPDATE leads SET
    first_in_at = COALESCE(
        (SELECT f.received_at FROM temp.first_inbound f WHERE f.contact_key = leads.contact_key),
        (SELECT m.created_at FROM messages m
         WHERE m.lead_id = leads.id AND m.direction = 'in' ORDER BY m.id LIMIT 1)),
    first_reply_at = (SELECT m.created_at FROM messages m
        WHERE m.lead_id = leads.id AND m.direction = 'out' AND m.turn_id IS NOT 'human'
        ORDER BY m.id LIMIT 1)
"""


def apply_schema(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)
    added: set[str] = set()
    for table, columns in ADDED_COLUMNS.items():
        existing = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in existing:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                added.add(f"{table}.{name}")
    if "leads.handed_off_at" in added:  # once: the handoffs still open when it was added
        db.execute(
            "UPDATE leads SET handed_off_at = handoff_at, handed_off_reason = handoff_reason"
            " WHERE handoff_at IS NOT NULL"
        )
    if "leads.first_reply_at" in added:  # once: from the messages already stored
        # One grouped pass over inbound (it has no index by contact for all rows).
        db.execute("CREATE TEMP TABLE first_inbound (contact_key TEXT PRIMARY KEY, received_at TEXT)")
        db.execute(
            "INSERT INTO temp.first_inbound SELECT contact_key, MIN(received_at) FROM inbound"
            " WHERE status <> 'ignored' GROUP BY contact_key"
        )
        db.execute(FIRST_MESSAGES_BACKFILL)
        db.execute("DROP TABLE temp.first_inbound")
    for statement in _LATE_INDEXES:
        db.execute(statement)
    apply_claim_order(db)
