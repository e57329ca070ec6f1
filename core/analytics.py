"""The sales dashboard's figures (issue 20): the funnel by week or by source, time to
first reply, temperatures, handoff reasons, opt-outs, and what the model cost.

Both stores hand in the same raw facts (`LeadFacts`, one per lead created in the period;
`UsageHour`, model usage per UTC hour and model) and `build_funnel` turns them into the
figures, so SQLite and Postgres can never disagree on a rule. The stores do the heavy
part (one indexed pass over the period's leads and their first messages); what is left
here is a walk over one row per lead.

The funnel is a cohort: every stage counts the leads *created* in the period (in the
company's time zone), whatever day they later reached the stage, so each stage is a
subset of the one before and the conversions stay between 0 and 1:

new → answered (the bot replied at least once) → qualified (morno or quente now) →
handed off → meeting booked (any meeting ever saved for the lead) → won (the CRM said
the deal was won, `Store.mark_deal_won`).

Costs are not a cohort: they are the usage of the turns committed in the period, per
company day; per lead and per qualified lead divide the period's cost by the period's
new and qualified leads (0.0 when there were none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from core.prices import tokens_usd, transcription_usd

GroupBy = Literal["week", "source"]
STAGES = ("new", "answered", "qualified", "handed_off", "booked", "won")
QUALIFIED = frozenset({"morno", "quente"})
TOP_REASONS = 5


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


SourceKey = tuple[str, str | None, str | None, str | None, str | None, str | None, str | None]


@dataclass(frozen=True)
class LeadFacts:
    """What the funnel needs of one lead, as both stores return it (positional rows:
    the attribution already read out of the JSON, the first reply's delay already in
    seconds, so a row costs one timestamp parse here)."""

    # channel, ad id, campaign id, form id (the referral), utm source, medium, campaign.
    source: SourceKey
    created_at: datetime
    temperature: str
    handed_off: bool
    handoff_reason: str | None
    won: bool
    opted_out: bool
    # From the lead's first message to the bot's first reply; None: no reply (yet).
    first_reply_s: float | None
    booked: bool

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> LeadFacts:
        created_at = _dt(row[7])
        if created_at is None:
            raise ValueError("a lead without created_at")
        delay = row[13]
        return cls(
            source=(row[0], row[1], row[2], row[3], row[4], row[5], row[6]),
            created_at=created_at,
            temperature=row[8],
            handed_off=bool(row[9]),
            handoff_reason=row[10],
            won=bool(row[11]),
            opted_out=bool(row[12]),
            first_reply_s=None if delay is None else max(round(float(delay), 3), 0.0),
            booked=bool(row[14]),
        )


@dataclass(frozen=True)
class UsageHour:
    """Model usage of the turns committed in one UTC hour with one model."""

    hour: datetime
    model: str
    turns: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    transcription_seconds: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> UsageHour:
        hour = _dt(row[0])
        if hour is None:
            raise ValueError("a usage row without its hour")
        return cls(hour, row[1], int(row[2]), int(row[3]), int(row[4]), int(row[5]), float(row[6] or 0))


# --- the figures -----------------------------------------------------------------------
class Stage(BaseModel):
    name: str
    leads: int
    # Share of the previous stage's leads that reached this one; None for "new" and
    # when the previous stage had none.
    conversion: float | None = None


class Source(BaseModel):
    """Where leads came from: the channel, and the ad/campaign/form (Lead Ads,
    Click-to-WhatsApp) or the UTMs (website forms) when known."""

    channel: str
    ad_id: str | None = None
    campaign_id: str | None = None
    form_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None

    @property
    def key(self) -> str:
        parts = [self.channel]
        parts += [f"{name}={value}" for name, value in self.model_dump(exclude={"channel"}).items() if value]
        return " ".join(parts)


class FunnelGroup(BaseModel):
    key: str
    # The Monday the week starts on (company time), for weeks; the source, for sources.
    week: date | None = None
    source: Source | None = None
    stages: list[Stage]
    first_reply_p50_s: float | None = None
    first_reply_p90_s: float | None = None
    by_temperature: dict[str, int]
    top_handoff_reasons: list[tuple[str, int]]
    opt_outs: int

    def stage(self, name: str) -> int:
        return next(s.leads for s in self.stages if s.name == name)


class Cost(BaseModel):
    turns: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    transcription_seconds: float = 0.0
    usd: float = 0.0
    brl: float = 0.0


class CostDay(Cost):
    day: date


class CostReport(BaseModel):
    brl_per_usd: float
    days: list[CostDay]
    total: Cost
    usd_per_lead: float
    brl_per_lead: float
    usd_per_qualified_lead: float
    brl_per_qualified_lead: float


class Funnel(BaseModel):
    since: datetime
    until: datetime
    timezone: str
    group_by: GroupBy
    total: FunnelGroup
    groups: list[FunnelGroup]
    # By week whatever `group_by` (the dashboard's weekly chart): `groups` when by week.
    weeks: list[FunnelGroup]
    cost: CostReport


# --- building them ---------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks (Postgres' percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def source_of(key: SourceKey) -> Source:
    channel, ad_id, campaign_id, form_id, utm_source, utm_medium, utm_campaign = key
    return Source(
        channel=channel,
        ad_id=ad_id,
        campaign_id=campaign_id,
        form_id=form_id,
        utm_source=utm_source,
        utm_medium=utm_medium,
        utm_campaign=utm_campaign,
    )


def week_of(moment: datetime, tz: ZoneInfo) -> date:
    """The Monday (company time) of the week `moment` falls in."""
    local = moment.astimezone(tz).date()
    return local - timedelta(days=local.weekday())


def _stages(leads: Sequence[LeadFacts]) -> list[Stage]:
    reached = {
        "new": leads,
        "answered": [x for x in leads if x.first_reply_s is not None],
        "qualified": [x for x in leads if x.temperature in QUALIFIED],
        "handed_off": [x for x in leads if x.handed_off],
        "booked": [x for x in leads if x.booked],
        "won": [x for x in leads if x.won],
    }
    stages: list[Stage] = []
    previous: int | None = None
    for name in STAGES:
        count = len(reached[name])
        conversion = None if not previous else round(count / previous, 4)
        stages.append(Stage(name=name, leads=count, conversion=conversion))
        previous = count
    return stages


def summarize(
    key: str, leads: Sequence[LeadFacts], *, week: date | None = None, source: Source | None = None
) -> FunnelGroup:
    delays = [x.first_reply_s for x in leads if x.first_reply_s is not None]
    p50, p90 = percentile(delays, 0.5), percentile(delays, 0.9)
    temperatures = Counter({"frio": 0, "morno": 0, "quente": 0})
    temperatures.update(x.temperature for x in leads)
    reasons = Counter(x.handoff_reason or "" for x in leads if x.handed_off)
    return FunnelGroup(
        key=key,
        week=week,
        source=source,
        stages=_stages(leads),
        first_reply_p50_s=None if p50 is None else round(p50, 3),
        first_reply_p90_s=None if p90 is None else round(p90, 3),
        by_temperature=dict(temperatures),
        top_handoff_reasons=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS],
        opt_outs=sum(1 for x in leads if x.opted_out),
    )


def _weeks(since: datetime, until: datetime, tz: ZoneInfo) -> list[date]:
    first, weeks = week_of(since, tz), []
    last = week_of(until - timedelta(microseconds=1), tz) if until > since else first
    while first <= last:
        weeks.append(first)
        first += timedelta(days=7)
    return weeks


def _groups(
    leads: Sequence[LeadFacts], group_by: GroupBy, since: datetime, until: datetime, tz: ZoneInfo
) -> list[FunnelGroup]:
    if group_by == "week":
        by_week: dict[date, list[LeadFacts]] = {w: [] for w in _weeks(since, until, tz)}
        for lead in leads:
            by_week.setdefault(week_of(lead.created_at, tz), []).append(lead)
        return [summarize(w.isoformat(), by_week[w], week=w) for w in sorted(by_week)]
    by_key: dict[SourceKey, list[LeadFacts]] = {}
    for lead in leads:
        by_key.setdefault(lead.source, []).append(lead)
    by_source = [(source_of(key), members) for key, members in by_key.items()]
    ordered = sorted(by_source, key=lambda sm: (-len(sm[1]), sm[0].key))
    return [summarize(src.key, members, source=src) for src, members in ordered]


def _cost_of(rows: Iterable[UsageHour], brl_per_usd: float) -> Cost:
    cost = Cost()
    for row in rows:
        usd = tokens_usd(
            row.model,
            prompt_tokens=row.prompt_tokens,
            cached_tokens=row.cached_tokens,
            completion_tokens=row.completion_tokens,
        ) + transcription_usd(row.transcription_seconds)
        cost.turns += row.turns
        cost.prompt_tokens += row.prompt_tokens
        cost.cached_tokens += row.cached_tokens
        cost.completion_tokens += row.completion_tokens
        cost.transcription_seconds += row.transcription_seconds
        cost.usd += usd
    cost.usd = round(cost.usd, 6)
    cost.brl = round(cost.usd * brl_per_usd, 6)
    cost.transcription_seconds = round(cost.transcription_seconds, 3)
    return cost


def cost_report(
    usage: Sequence[UsageHour],
    *,
    since: datetime,
    until: datetime,
    tz: ZoneInfo,
    brl_per_usd: float,
    leads: int,
    qualified: int,
) -> CostReport:
    by_day: dict[date, list[UsageHour]] = {}
    day = since.astimezone(tz).date()
    last = (until - timedelta(microseconds=1)).astimezone(tz).date() if until > since else day
    while day <= last:
        by_day[day] = []
        day += timedelta(days=1)
    for row in usage:
        by_day.setdefault(row.hour.astimezone(tz).date(), []).append(row)
    days = [CostDay(day=d, **_cost_of(by_day[d], brl_per_usd).model_dump()) for d in sorted(by_day)]
    total = _cost_of(usage, brl_per_usd)

    def per(n: int) -> float:
        return round(total.usd / n, 6) if n else 0.0

    return CostReport(
        brl_per_usd=brl_per_usd,
        days=days,
        total=total,
        usd_per_lead=per(leads),
        brl_per_lead=round(per(leads) * brl_per_usd, 6),
        usd_per_qualified_lead=per(qualified),
        brl_per_qualified_lead=round(per(qualified) * brl_per_usd, 6),
    )


def build_funnel(
    leads: Sequence[LeadFacts],
    usage: Sequence[UsageHour],
    *,
    since: datetime,
    until: datetime,
    timezone: str,
    group_by: GroupBy,
    brl_per_usd: float,
) -> Funnel:
    """The dashboard's figures for [since, until) from the stores' facts (see the module)."""
    if group_by not in ("week", "source"):
        raise ValueError(f"group_by must be 'week' or 'source', not {group_by!r}")
    tz = ZoneInfo(timezone)
    total = summarize("total", leads)
    groups = _groups(leads, group_by, since, until, tz)
    return Funnel(
        since=since,
        until=until,
        timezone=timezone,
        group_by=group_by,
        total=total,
        groups=groups,
        weeks=groups if group_by == "week" else _groups(leads, "week", since, until, tz),
        cost=cost_report(
            usage,
            since=since,
            until=until,
            tz=tz,
            brl_per_usd=brl_per_usd,
            leads=total.stage("new"),
            qualified=total.stage("qualified"),
        ),
    )
