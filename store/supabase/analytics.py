"""The sales dashboard's facts on Supabase (issue 20): two rpc calls, each one jsonb
value (PostgREST's max-rows cap does not cut a single value), turned into the figures
by core.analytics exactly as the SQLite store does
(supabase/migrations/20261203000004_turn_costs.sql)."""

from __future__ import annotations

from datetime import datetime

from core.analytics import LeadFacts, UsageHour
from core.clock import utc_now
from store.funnel import FunnelFromFacts
from store.supabase.requests import PostgrestRequests
from store.timestamps import iso


class SupabaseAnalytics(FunnelFromFacts, PostgrestRequests):
    async def analytics_facts(
        self, since: datetime, until: datetime
    ) -> tuple[list[LeadFacts], list[UsageHour]]:
        leads = await self._rpc("sdr_analytics_leads", p_since=iso(since), p_until=iso(until))
        usage = await self._rpc("sdr_analytics_usage", p_since=iso(since), p_until=iso(until))
        return [LeadFacts.from_row(row) for row in leads or []], [
            UsageHour.from_row(row) for row in usage or []
        ]

    async def mark_deal_won(self, contact_key: str, *, at: datetime | None = None) -> bool:
        return bool(
            await self._rpc("sdr_mark_deal_won", p_contact_key=contact_key, p_at=iso(at or utc_now()))
        )
