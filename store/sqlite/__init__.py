"""Embedded SQLite store: the default that runs with no services at all.

`SqliteStore` is assembled from one part per role, each a small class over the shared
connection (`connection.SqliteConnection`: opening, pragmas, transactions, recovery from
a full disk):

- `inbox`: webhook messages, group-committed before the provider gets its 200;
- `leads`: a lead and its history, CRM links;
- `turns`: a turn's commit, in named steps, in one transaction;
- `schedule`: per-contact turn leases and due follow-ups;
- `outbox`: side effects, claimed head-first per order key;
- `messages`: delivery reports and messages the business sent itself;
- `people`: handoff, Chatwoot links, human replies, the bot's pause;
- `rate_slots`: provider rate limits metered in the file (GCRA), for processes sharing it;
- `sellers`: which seller takes a lead (round-robin kept in the file, sticky per lead);
- `meetings`: meetings booked on a seller's calendar, their reminders;
- `analytics`: the sales dashboard's facts (funnel, costs), and deals won;
- `erasure`: LGPD erasure and its tombstones (keyed by `erasure_key`, a file beside
  the database);
- `schema`: the DDL and the in-place upgrade of older databases.
"""

from __future__ import annotations

from store.sqlite.analytics import Analytics
from store.sqlite.connection import SqliteConnection
from store.sqlite.erasure import Erasure
from store.sqlite.inbox import Inbox
from store.sqlite.meetings import Meetings
from store.sqlite.messages import Messages
from store.sqlite.outbox import Outbox
from store.sqlite.people import People
from store.sqlite.rate_slots import RateSlots
from store.sqlite.schedule import Schedule
from store.sqlite.sellers import Sellers
from store.sqlite.turns import Turns

__all__ = ["SqliteStore"]


class SqliteStore(
    Inbox,
    People,
    Turns,
    Schedule,
    Outbox,
    Messages,
    Erasure,
    RateSlots,
    Sellers,
    Meetings,
    Analytics,
    SqliteConnection,
):
    """The `store.base.Store` protocol on one embedded database file."""
