"""The sales dashboard's facts in SQLite (issue 20): one indexed pass over the period's
leads, and the period's model usage per UTC hour.

The figures themselves are built by core.analytics, shared with Postgres
(supabase/migrations/20261203000004_turn_costs.sql returns the same rows). Timestamps
are ISO text in UTC with their offset (store/timestamps.py), so a period is a range scan
on `leads_created` / `turn_usage_created`. Each lead's first message and the bot's first
reply are kept on its row by the turn's commit (turns.py `_upsert_lead`); the
only probe per lead is `meetings_lead`.
"""

from __future__ import annotations

from datetime import datetime

from core.analytics import LeadFacts, UsageHour
from core.clock import utc_now
from store.funnel import FunnelFromFacts
from store.sqlite.connection import SqliteConnection
from store.timestamps import iso

# The row of core.analytics.LeadFacts.from_row (first_in_at unknown: an old lead whose
# reply is all that is known; its delay counts as 0).
LEAD_FACTS = """
SELECT l.channel, json_extract(l.referral, '$.source_id'), json_extract(l.referral, '$.campaign_id'),
       json_extract(l.referral, '$.form_id'), json_extract(l.utm, '$.utm_source'),
       json_extract(l.utm, '$.utm_medium'), json_extract(l.utm, '$.utm_campaign'),
       l.created_at, l.temperature, l.handed_off_at IS NOT NULL, l.handed_off_reason, l.won_at IS NOT NULL,
       l.opted_out,
       round((julianday(l.first_reply_at) - julianday(COALESCE(l.first_in_at, l.first_reply_at))) * 86400, 3),
       EXISTS (SELECT 1 FROM meetings mt WHERE mt.contact_key = l.contact_key)
FROM leads l
WHERE l.created_at >= ? AND l.created_at < ?
"""

# substr(created_at, 1, 13) is the UTC hour ("2026-12-03T14"): the text is always UTC.
USAGE_HOURS = """
SELECT substr(created_at, 1, 13) || ':00:00+00:00', model, COUNT(*), SUM(prompt_tokens),
       SUM(cached_tokens), SUM(completion_tokens), COALESCE(SUM(transcription_seconds), 0)
FROM turn_usage
WHERE created_at >= ? AND created_at < ?
GROUP BY 1, 2
ORDER BY 1, 2
"""


class Analytics(FunnelFromFacts, SqliteConnection):
    async def analytics_facts(
        self, since: datetime, until: datetime
    ) -> tuple[list[LeadFacts], list[UsageHour]]:
        period = (iso(since), iso(until))
        leads = [LeadFacts.from_row(tuple(row)) for row in self.db.execute(LEAD_FACTS, period)]
        usage = [UsageHour.from_row(tuple(row)) for row in self.db.execute(USAGE_HOURS, period)]
        return leads, usage

    async def mark_deal_won(self, contact_key: str, *, at: datetime | None = None) -> bool:
        with self._tx() as db:
            row = db.execute(
                "UPDATE leads SET won_at = COALESCE(won_at, ?) WHERE contact_key = ? RETURNING id",
                (iso(at or utc_now()), contact_key),
            ).fetchone()
        return row is not None
