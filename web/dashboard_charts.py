"""The dashboard's charts, drawn on the server as SVG by pygal (a well-kept chart
library): the funnel, new and qualified leads per week, and the model cost per day.

pygal would link its tooltip script from a CDN: `js=[]` turns that off, and an XML
filter drops the inline `<script>` carrying pygal's config, so a chart is plain SVG. The page shows each one as an `<img>` with a `data:` URI: an image never runs
script and its own `<style>` is not the page's inline style, so the page's CSP stays
strict (`img-src 'self' data:`). The figures are also in the tables beside the charts.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pygal
from pygal.style import Style

from core.analytics import CostDay, FunnelGroup

STAGE_LABELS = {
    "new": "Novos leads",
    "answered": "Responderam",
    "qualified": "Qualificados",
    "handed_off": "Transferidos",
    "booked": "Reunião marcada",
    "won": "Venda ganha",
}
_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#1f2937",
    foreground_strong="#111827",
    foreground_subtle="#6b7280",
    colors=("#2563eb", "#16a34a", "#f59e0b", "#dc2626"),
    font_family="sans-serif",
    label_font_size=18,
    major_label_font_size=18,
    value_font_size=18,
    legend_font_size=18,
    title_font_size=22,
)


def _without_scripts(root: Any) -> Any:
    """pygal's XML filter: every `<script>` element out of the SVG tree."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _options(title: str, **more: object) -> dict[str, object]:
    options: dict[str, object] = {
        "title": title,
        "style": _STYLE,
        "js": [],  # no tooltip script (pygal links it from a CDN): plain SVG
        "disable_xml_declaration": True,
        # Drawn for a phone's width: the page scales the image to the column it sits in.
        "width": 600,
        "height": 420,
        "legend_at_bottom": True,
        "print_values": False,
        "show_y_guides": True,
        "truncate_label": -1,
    }
    return options | more


def _svg(chart: Any) -> str:
    chart.add_xml_filter(_without_scripts)
    return str(chart.render(is_unicode=True))


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def funnel_chart(total: FunnelGroup) -> str:
    chart = pygal.HorizontalBar(**_options("Funil", show_legend=False, print_values=True))
    chart.x_labels = [STAGE_LABELS[s.name] for s in reversed(total.stages)]
    chart.add("Leads", [s.leads for s in reversed(total.stages)])
    return _svg(chart)


def weekly_chart(weeks: Sequence[FunnelGroup]) -> str:
    chart = pygal.Bar(**_options("Leads por semana"))
    chart.x_labels = [w.week.strftime("%d/%m") if w.week else w.key for w in weeks]
    chart.add("Novos leads", [w.stage("new") for w in weeks])
    chart.add("Qualificados", [w.stage("qualified") for w in weeks])
    return _svg(chart)


def cost_chart(days: Sequence[CostDay]) -> str:
    chart = pygal.Bar(
        **_options(
            "Custo do modelo por dia (US$)",
            show_legend=False,
            x_label_rotation=-45,
            show_minor_x_labels=False,
            value_formatter=lambda usd: f"US$ {usd:.4f}".replace(".", ","),
        )
    )
    chart.x_labels = [d.day.strftime("%d/%m") for d in days]
    chart.x_labels_major = [d.day.strftime("%d/%m") for d in days[:: max(1, len(days) // 10)]]
    chart.add("US$", [round(d.usd, 6) for d in days])
    return _svg(chart)


__all__ = ["STAGE_LABELS", "cost_chart", "data_uri", "funnel_chart", "weekly_chart"]
