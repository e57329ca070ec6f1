"""The funnel both stores answer: each reads its own facts, one aggregation builds it.

The SQLite and Supabase stores differ only in how they read a period's lead facts and
usage hours; building the funnel from them is the same code, so their figures cannot
drift apart.
"""

from __future__ import annotations

from datetime import datetime

from core.analytics import Funnel, GroupBy, LeadFacts, UsageHour, build_funnel


class FunnelFromFacts:
    async def analytics_facts(
        self, since: datetime, until: datetime
    ) -> tuple[list[LeadFacts], list[UsageHour]]:
        raise NotImplementedError

    async def funnel(
        self,
        since: datetime,
        until: datetime,
        *,
        group_by: GroupBy = "week",
        timezone: str,
        brl_per_usd: float,
    ) -> Funnel:
        leads, usage = await self.analytics_facts(since, until)
        return build_funnel(
            leads,
            usage,
            since=since,
            until=until,
            timezone=timezone,
            group_by=group_by,
            brl_per_usd=brl_per_usd,
        )
