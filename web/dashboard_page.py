"""The dashboard's HTML (pt-BR), rendered on the server from a `core.analytics.Funnel`.

Everything that is not ours is escaped: source names, UTMs, ad ids and handoff reasons
come from leads, ads and forms, so they are data, never markup. The page has no script;
its stylesheet is a file the bot serves, and the charts are SVG images (web/dashboard_charts.py).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from core.analytics import Funnel, FunnelGroup, Source
from core.models import CHANNEL_NAMES
from web.dashboard_charts import STAGE_LABELS, cost_chart, data_uri, funnel_chart, weekly_chart

CHANNELS = {**CHANNEL_NAMES, "cli": "Terminal"}
TEMPERATURES = (("frio", "Frio"), ("morno", "Morno"), ("quente", "Quente"))


# --- numbers the Brazilian way -----------------------------------------------------------
def number(value: float, decimals: int = 0) -> str:
    """1.234,57: half up on the decimal the figure was computed as (R$ 0,615 is R$ 0,62)."""
    rounded = Decimal(repr(value)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    text = f"{rounded:,.{decimals}f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{number(value * 100, 1)}%"


def usd(value: float, decimals: int = 4) -> str:
    return f"US$ {number(value, decimals)}"


def brl(value: float, decimals: int = 2) -> str:
    return f"R$ {number(value, decimals)}"


def duration(seconds: float | None) -> str:
    """42 s, 3 min 25 s, 2 h 05 min; — when nobody was answered."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def source_label(source: Source) -> str:
    """WhatsApp · anúncio ad1 · campanha c1 · formulário f1 · UTM google / cpc / verao."""
    parts = [CHANNELS.get(source.channel, source.channel)]
    named = (("anúncio", source.ad_id), ("campanha", source.campaign_id), ("formulário", source.form_id))
    parts += [f"{name} {value}" for name, value in named if value]
    utm = [v for v in (source.utm_source, source.utm_medium, source.utm_campaign) if v]
    if utm:
        parts.append("UTM " + " / ".join(utm))
    return " · ".join(parts)


def group_title(group: FunnelGroup) -> str:
    if group.week is not None:
        return f"Semana de {day(group.week)}"
    if group.source is not None:
        return source_label(group.source)
    return group.key


# --- pieces ------------------------------------------------------------------------------
def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _stage_table(group: FunnelGroup) -> str:
    rows = "".join(
        f'<tr><th scope="row">{_e(STAGE_LABELS[s.name])}</th><td class="n">{_e(number(s.leads))}</td>'
        f'<td class="n">{_e(percent(s.conversion))}</td></tr>'
        for s in group.stages
    )
    return (
        '<table class="stages"><thead><tr><th scope="col">Etapa</th><th scope="col" class="n">Leads</th>'
        f'<th scope="col" class="n">Conversão</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _facts(group: FunnelGroup) -> str:
    temps = " · ".join(f"{label} {number(group.by_temperature.get(key, 0))}" for key, label in TEMPERATURES)
    reasons = "".join(
        f'<li>{_e(reason or "sem motivo")} <span class="n">({_e(number(count))})</span></li>'
        for reason, count in group.top_handoff_reasons
    )
    return (
        '<dl class="facts">'
        f"<dt>1ª resposta (p50 / p90)</dt><dd>{_e(duration(group.first_reply_p50_s))} / "
        f"{_e(duration(group.first_reply_p90_s))}</dd>"
        f"<dt>Temperatura</dt><dd>{_e(temps)}</dd>"
        f"<dt>Opt-outs</dt><dd>{_e(number(group.opt_outs))}</dd>"
        f"<dt>Motivos de transferência</dt><dd>{f'<ol>{reasons}</ol>' if reasons else 'nenhuma transferência'}</dd>"
        "</dl>"
    )


def _figure(svg: str, alt: str) -> str:
    return (
        f'<figure class="chart"><img src="{data_uri(svg)}" alt="{_e(alt)}" width="600" height="420"></figure>'
    )


def _cards(funnel: Funnel) -> str:
    total, cost = funnel.total, funnel.cost
    cards = (
        ("Novos leads", number(total.stage("new"))),
        ("Qualificados", number(total.stage("qualified"))),
        ("Transferidos", number(total.stage("handed_off"))),
        ("Reuniões", number(total.stage("booked"))),
        ("Vendas", number(total.stage("won"))),
        ("1ª resposta (p50)", duration(total.first_reply_p50_s)),
        ("Opt-outs", number(total.opt_outs)),
        ("Custo do modelo", f"{brl(cost.total.brl)} ({usd(cost.total.usd, 2)})"),
    )
    items = "".join(
        f'<li><span class="label">{_e(k)}</span><span class="value">{_e(v)}</span></li>' for k, v in cards
    )
    return f'<ul class="cards">{items}</ul>'


def _cost(funnel: Funnel) -> str:
    cost = funnel.cost
    total = cost.total
    rows = (
        ("Total", f"{usd(total.usd)} · {brl(total.brl)}"),
        ("Por lead", f"{usd(cost.usd_per_lead)} · {brl(cost.brl_per_lead, 4)}"),
        (
            "Por lead qualificado",
            f"{usd(cost.usd_per_qualified_lead)} · {brl(cost.brl_per_qualified_lead, 4)}",
        ),
        ("Turnos", number(total.turns)),
        ("Tokens de entrada (em cache)", f"{number(total.prompt_tokens)} ({number(total.cached_tokens)})"),
        ("Tokens de saída", number(total.completion_tokens)),
        ("Áudio transcrito", duration(total.transcription_seconds) if total.transcription_seconds else "—"),
        ("Câmbio", f"{brl(cost.brl_per_usd)} por US$ 1"),
    )
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    days = "".join(
        f'<tr><th scope="row">{_e(day(d.day))}</th><td class="n">{_e(number(d.turns))}</td>'
        f'<td class="n">{_e(number(d.prompt_tokens + d.completion_tokens))}</td>'
        f'<td class="n">{_e(usd(d.usd))}</td><td class="n">{_e(brl(d.brl))}</td></tr>'
        for d in cost.days
        if d.turns
    )
    table = (
        '<div class="scroll"><table><thead><tr><th scope="col">Dia</th><th scope="col" class="n">Turnos</th>'
        '<th scope="col" class="n">Tokens</th><th scope="col" class="n">US$</th><th scope="col" class="n">R$</th>'
        f"</tr></thead><tbody>{days}</tbody></table></div>"
        if days
        else "<p>Nenhum turno no período.</p>"
    )
    chart = _figure(cost_chart(cost.days), "Custo do modelo por dia, em US$")
    return (
        f'<section id="custo"><h2>Custo do modelo</h2><dl class="facts">{facts}</dl>{chart}{table}</section>'
    )


def _groups(funnel: Funnel) -> str:
    title = "Por semana" if funnel.group_by == "week" else "Por origem"
    if not funnel.groups:
        return f'<section id="grupos"><h2>{title}</h2><p>Nenhum lead no período.</p></section>'
    parts = "".join(
        f'<article class="group"><h3>{_e(group_title(g))}</h3>{_stage_table(g)}{_facts(g)}</article>'
        for g in funnel.groups
    )
    return f'<section id="grupos"><h2>{title}</h2><div class="groups">{parts}</div></section>'


def _nav(funnel: Funnel, query: dict[str, str]) -> str:
    def link(group: str, label: str) -> str:
        current = ' aria-current="page"' if funnel.group_by == group else ""
        href = "?" + urlencode({**query, "group": group})
        return f'<a href="{_e(href)}"{current}>{label}</a>'

    return f'<nav class="switch">{link("week", "Por semana")}{link("source", "Por origem")}</nav>'


def render_page(funnel: Funnel, *, company: str, query: dict[str, str]) -> str:
    """The whole page (the weekly chart from `funnel.weeks`, whatever the grouping);
    `query` the parameters the grouping links keep (the token among them, when given so)."""
    tz = ZoneInfo(funnel.timezone)
    first = funnel.since.astimezone(tz).date()
    last = datetime.fromtimestamp(funnel.until.timestamp() - 1, tz).date()
    charts = _figure(funnel_chart(funnel.total), "Funil: leads em cada etapa") + _figure(
        weekly_chart(funnel.weeks), "Novos leads e qualificados por semana"
    )
    return f"""<!doctype html>
<html lang="pt-BR">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>Painel de vendas · {_e(company)}</title>
<link rel="stylesheet" href="dashboard/static/dashboard.css">
</head>
<body data-ready="1">
<header>
<h1>Painel de vendas</h1>
<p class="period">{_e(company)} · leads de {_e(day(first))} a {_e(day(last))} ({_e(funnel.timezone)})</p>
{_nav(funnel, query)}
</header>
<main>
{_cards(funnel)}
<section id="funil"><h2>Funil</h2>{_stage_table(funnel.total)}{_facts(funnel.total)}{charts}</section>
{_groups(funnel)}
{_cost(funnel)}
</main>
<footer><p>O funil conta os leads criados no período; o custo, os turnos do período.</p></footer>
</body>
</html>
"""


__all__ = ["brl", "duration", "number", "percent", "render_page", "source_label", "usd"]
