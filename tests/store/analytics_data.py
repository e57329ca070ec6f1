"""Generated dashboard data (issue 20) with fixed timestamps, written straight into a
store's tables (SQLite or Postgres), for tests/store/test_analytics.py and
bench/dashboard_queries.py.

`known_dataset` is 50 leads whose every figure is known by construction (the test
asserts them); `realistic_dataset` is any number of leads with a plausible spread of
channels, replies, temperatures and costs (the bench's 100,000).
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# Monday 2026-11-16 00:00 in São Paulo (UTC-3, no daylight saving since 2019).
WEEK1 = datetime(2026, 11, 16, 3, tzinfo=UTC)
WEEK2 = WEEK1 + timedelta(days=7)
PERIOD = (WEEK1, WEEK1 + timedelta(days=14))
TIMEZONE = "America/Sao_Paulo"

AD_CLICK = {"source_id": "ad1", "campaign_id": "c1", "source_type": "ad", "ctwa_clid": "clid"}
LEAD_AD_FORM = {"source_id": "ad2", "campaign_id": "c2", "form_id": "f1", "leadgen_id": "lg"}
WEBSITE_UTM = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "verao"}


@dataclass
class Dataset:
    leads: list[dict[str, Any]] = field(default_factory=list)
    conversations: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    inbound: list[tuple[Any, ...]] = field(default_factory=list)
    meetings: list[tuple[Any, ...]] = field(default_factory=list)
    usage: list[tuple[Any, ...]] = field(default_factory=list)

    def add_lead(self, *, channel: str, created_at: datetime, **fields: Any) -> tuple[int, str]:
        # As the stores write it: the first handoff beside the current one.
        fields.setdefault("handed_off_at", fields.get("handoff_at"))
        fields.setdefault("handed_off_reason", fields.get("handoff_reason"))
        lead_id = len(self.leads) + 1
        key = f"{'whatsapp' if channel == 'zapi' else channel}:55119{lead_id:08d}"
        self.leads.append(
            {
                "id": lead_id,
                "contact_key": key,
                "channel": channel,
                "contact_id": key.split(":")[1],
                "created_at": created_at,
                "temperature": "frio",
                "referral": None,
                "utm": None,
                "handoff_at": None,
                "handoff_reason": None,
                "won_at": None,
                "opted_out": False,
                "first_in_at": None,
                "first_reply_at": None,
                **fields,
            }
        )
        self.conversations.append((lead_id, lead_id, channel, created_at, created_at))
        return lead_id, key

    def message(self, lead_id: int, direction: str, at: datetime, *, turn_id: str | None = "t") -> None:
        self.messages.append((len(self.messages) + 1, lead_id, lead_id, direction, "text", "oi", turn_id, at))
        lead = self.leads[lead_id - 1]
        if direction == "out" and turn_id != "human" and lead["first_reply_at"] is None:
            lead["first_reply_at"] = at  # as a turn's commit keeps it (store/sqlite/turns.py)
        if direction == "in" and lead["first_in_at"] is None:
            lead["first_in_at"] = at

    def received(self, key: str, at: datetime, *, status: str = "done") -> None:
        n = len(self.inbound) + 1
        self.inbound.append((n, "zapi", f"wamid.{n}", key, {"text": "oi"}, status, at))
        lead = next(x for x in reversed(self.leads) if x["contact_key"] == key)
        if status != "ignored" and (lead["first_in_at"] is None or at < lead["first_in_at"]):
            lead["first_in_at"] = at

    def meeting(self, key: str, at: datetime) -> None:
        end = at + timedelta(minutes=30)
        self.meetings.append((f"ev{len(self.meetings)}", key, "ana", "cal", at, end, "scheduled", at))

    def turn_usage(
        self, lead_id: int, at: datetime, tokens: tuple[int, int, int], seconds: float | None = 0.0
    ) -> None:
        n = len(self.usage) + 1
        self.usage.append((n, lead_id, f"turn{n}", "gpt-4o-2024-08-06", *tokens, seconds, at))


def delay_s(i: int) -> int:
    """Lead i's first reply comes (i + 1) * 10 s after its first message."""
    return (i + 1) * 10


TOKENS = (1000, 400, 100)  # prompt (cached included), cached, completion: US$ 0.003


def known_dataset() -> Dataset:
    """50 leads over two weeks; the figures tests/store/test_analytics.py asserts.

    i < 30 in the first week, the rest in the second; source by i % 5 (ad click, Lead
    Ads form, website form with UTMs, Instagram, plain WhatsApp); answered: i < 40 (one
    turn each, TOKENS, lead 3's with a 30 s voice note, lead 4's of unknown length);
    qualified: i < 20 (even morno, odd quente); handed off: i < 8 (5 "pediu orçamento",
    3 "quer falar com humano"); booked: i < 3; won: lead 0; opted out: 48 and 49."""
    data = Dataset()
    sources: list[tuple[str, dict[str, Any]]] = [
        ("zapi", {"referral": AD_CLICK}),
        ("zapi", {"referral": LEAD_AD_FORM}),
        ("zapi", {"utm": WEBSITE_UTM}),
        ("instagram", {}),
        ("zapi", {}),
    ]
    for i in range(50):
        created = WEEK1 + timedelta(hours=i) if i < 30 else WEEK2 + timedelta(hours=i - 30)
        channel, attribution = sources[i % 5]
        fields: dict[str, Any] = dict(attribution)
        if i < 20:
            fields["temperature"] = "morno" if i % 2 == 0 else "quente"
        if i < 8:
            fields["handoff_at"] = created + timedelta(hours=1)
            fields["handoff_reason"] = "pediu orçamento" if i < 5 else "quer falar com humano"
        if i == 0:
            fields["won_at"] = created + timedelta(days=3)
        if i >= 48:
            fields["opted_out"] = True
        lead_id, key = data.add_lead(channel=channel, created_at=created, **fields)
        if i == 1:  # an ignored delivery before the lead's first message does not count
            data.received(key, created - timedelta(hours=5), status="ignored")
        data.received(key, created)
        data.message(lead_id, "in", created)
        if i == 2:  # a person's reply is not the bot's
            data.message(lead_id, "out", created + timedelta(seconds=1), turn_id="human")
        if i < 40:
            replied = created + timedelta(seconds=delay_s(i))
            data.message(lead_id, "out", replied)
            data.message(lead_id, "out", replied + timedelta(minutes=5))
            seconds = 30.0 if i == 3 else None if i == 4 else 0.0
            data.turn_usage(lead_id, replied, TOKENS, seconds)
        if i < 3:
            data.meeting(key, created + timedelta(days=2))
    # Usage outside the period is not counted.
    data.turn_usage(1, WEEK1 - timedelta(hours=1), TOKENS)
    return data


def realistic_dataset(n: int, *, start: datetime = WEEK1, days: int = 90, seed: int = 20) -> Dataset:
    """`n` leads spread over `days`: ~80% answered (2-6 turns each), ~40% qualified, ~15%
    handed off, ~5% booked, ~1.5% won, ~3% opted out; 2-8 messages each way."""
    rnd = random.Random(seed)
    data = Dataset()
    span = days * 86400
    for _ in range(n):
        created = start + timedelta(seconds=rnd.randrange(span))
        roll = rnd.random()
        fields: dict[str, Any] = {}
        channel = "instagram" if roll < 0.15 else "zapi"
        if 0.15 <= roll < 0.45:
            fields["referral"] = {
                "source_id": f"ad{rnd.randrange(40)}",
                "campaign_id": f"c{rnd.randrange(8)}",
            }
        elif 0.45 <= roll < 0.6:
            fields["referral"] = {"source_id": f"ad{rnd.randrange(40)}", "form_id": f"f{rnd.randrange(5)}"}
        elif 0.6 <= roll < 0.7:
            fields["utm"] = {
                "utm_source": rnd.choice(["google", "bing"]),
                "utm_campaign": f"u{rnd.randrange(6)}",
            }
        answered = rnd.random() < 0.8
        qualified = answered and rnd.random() < 0.5
        if qualified:
            fields["temperature"] = rnd.choice(["morno", "quente"])
        if qualified and rnd.random() < 0.35:
            fields["handoff_at"] = created + timedelta(hours=2)
            fields["handoff_reason"] = rnd.choice(["pediu orçamento", "quer falar com humano", "lead quente"])
        if rnd.random() < 0.03:
            fields["opted_out"] = True
        if fields.get("handoff_at") and rnd.random() < 0.1:
            fields["won_at"] = created + timedelta(days=5)
        lead_id, key = data.add_lead(channel=channel, created_at=created, **fields)
        data.received(key, created)
        at = created
        for turn in range(rnd.randint(2, 6) if answered else 1):
            data.message(lead_id, "in", at)
            if not answered:
                break
            at += timedelta(seconds=rnd.randint(3, 600))
            data.message(lead_id, "out", at)
            seconds = rnd.choice([0.0, 0.0, 0.0, 12.5])
            data.turn_usage(
                lead_id, at, (rnd.randint(2500, 6000), rnd.randint(0, 2000), rnd.randint(60, 300)), seconds
            )
            at += timedelta(seconds=rnd.randint(30, 3600))
            if turn > 0:
                data.received(key, at)
        if qualified and rnd.random() < 0.12:
            data.meeting(key, created + timedelta(days=3))
    return data


# --- writing it -------------------------------------------------------------------------
LEAD_COLUMNS = (
    "id",
    "contact_key",
    "channel",
    "contact_id",
    "created_at",
    "temperature",
    "referral",
    "utm",
    "handoff_at",
    "handoff_reason",
    "handed_off_at",
    "handed_off_reason",
    "won_at",
    "opted_out",
    "first_in_at",
    "first_reply_at",
)
TABLES = {
    "conversations": "id, lead_id, channel, started_at, last_message_at",
    "messages": "id, conversation_id, lead_id, direction, kind, text, turn_id, created_at",
    "inbound": "id, channel, provider_message_id, contact_key, message, status, received_at",
    "meetings": "event_id, contact_key, seller_key, calendar_id, starts_at, ends_at, status, created_at",
    "turn_usage": "id, lead_id, turn_id, model, prompt_tokens, cached_tokens, completion_tokens,"
    " transcription_seconds, created_at",
}


def _rows(data: Dataset) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "conversations": data.conversations,
        "messages": data.messages,
        "inbound": data.inbound,
        "meetings": data.meetings,
        "turn_usage": data.usage,
    }


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def write_sqlite(db: sqlite3.Connection, data: Dataset) -> None:
    """Into an opened SqliteStore's connection (the schema is the store's)."""
    marks = ", ".join("?" * (len(LEAD_COLUMNS) + 1))
    db.execute("BEGIN")
    db.executemany(
        f"INSERT INTO leads ({', '.join(LEAD_COLUMNS)}, updated_at) VALUES ({marks})",
        (
            [_sqlite_value(lead[c]) for c in LEAD_COLUMNS] + [_sqlite_value(lead["created_at"])]
            for lead in data.leads
        ),
    )
    for table, rows in _rows(data).items():
        columns = TABLES[table]
        extra = ", updated_at" if table == "meetings" else ""
        count = columns.count(",") + 1 + (1 if extra else 0)
        db.executemany(
            f"INSERT INTO {table} ({columns}{extra}) VALUES ({', '.join('?' * count)})",
            ([_sqlite_value(v) for v in row] + ([_sqlite_value(row[-1])] if extra else []) for row in rows),
        )
    db.execute("COMMIT")


def write_postgres(conn: Any, data: Dataset) -> None:
    """With COPY, into a psycopg connection on a migrated schema."""

    def pg(value: Any) -> Any:
        return json.dumps(value) if isinstance(value, dict) else value

    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY leads ({', '.join(LEAD_COLUMNS)}, updated_at) FROM STDIN") as copy:
            for lead in data.leads:
                copy.write_row([pg(lead[c]) for c in LEAD_COLUMNS] + [lead["created_at"]])
        for table, rows in _rows(data).items():
            extra = ", updated_at" if table == "meetings" else ""
            with cur.copy(f"COPY {table} ({TABLES[table]}{extra}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([pg(v) for v in row] + ([row[-1]] if extra else []))
        for table in ("leads", "conversations", "messages", "inbound", "turn_usage"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    conn.execute("ANALYZE")
