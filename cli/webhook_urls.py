"""The webhook addresses the doctor prints for an operator to paste into each provider.

Secrets are named, never shown: `<ZAPI_WEBHOOK_SECRET>` means "its value".
"""

from __future__ import annotations

from core.settings import Settings


def public_base(settings: Settings) -> tuple[str, str | None]:
    """The base providers must call, and a warning when it cannot work for them."""
    if settings.public_url and settings.public_url.strip():
        base = settings.public_url.strip().rstrip("/")
        if base.lower().startswith("https://"):
            return base, None
        return base, (
            "Warning: PUBLIC_URL is not HTTPS; Meta and most providers only call https:// "
            "addresses. Use a domain with a certificate (e.g. behind a proxy)."
        )
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "localhost"
    return f"http://{host}:{settings.port}", (
        "Warning: PUBLIC_URL is not set, so these addresses only work on this machine. "
        "Providers need a public HTTPS URL: set PUBLIC_URL "
        "(e.g. https://bot.yourcompany.com.br)."
    )


def webhook_lines(settings: Settings) -> list[str]:
    """Secrets are named, never shown: `<ZAPI_WEBHOOK_SECRET>` means "its value"."""
    base, warning = public_base(settings)
    s = settings
    rows: list[tuple[str, str, str]] = []
    if s.zapi_webhook_secret is not None:
        rows.append(
            ("Z-API (Ao receber / On receive)", f"{base}/webhooks/zapi?token=<ZAPI_WEBHOOK_SECRET>", "")
        )
    else:
        rows.append(
            (
                "Z-API (Ao receber / On receive)",
                f"{base}/webhooks/zapi",
                "without ZAPI_WEBHOOK_SECRET the bot refuses everything that arrives here; set a "
                "secret and append ?token=<ZAPI_WEBHOOK_SECRET>",
            )
        )
    if s.waha_webhook_hmac_key is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha", "HMAC key in WAHA: the value of WAHA_WEBHOOK_HMAC_KEY"))
    elif s.waha_webhook_secret is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha?token=<WAHA_WEBHOOK_SECRET>", ""))
    else:
        rows.append(
            (
                "WAHA",
                f"{base}/webhooks/waha",
                "set WAHA_WEBHOOK_HMAC_KEY or WAHA_WEBHOOK_SECRET: without them WAHA is refused",
            )
        )
    meta_note = "verify token: the value of META_VERIFY_TOKEN"
    if s.meta_app_secret is None:
        meta_note += "; set META_APP_SECRET, without it Meta is refused"
    rows.append(("Meta (WhatsApp Cloud, Instagram, Lead Ads)", f"{base}/webhooks/meta", meta_note))
    rows.append(
        (
            "Chatwoot",
            f"{base}/webhooks/chatwoot?token=<CHATWOOT_WEBHOOK_SECRET>",
            ""
            if s.chatwoot_webhook_secret is not None
            else "set CHATWOOT_WEBHOOK_SECRET: without it Chatwoot is refused",
        )
    )
    rows.append(
        (
            "CRM (won/lost/meeting)",
            f"{base}/webhooks/crm?token=<CRM_WEBHOOK_SECRET>",
            "or the X-Webhook-Secret header"
            + (
                ""
                if s.crm_webhook_secret is not None
                else "; set CRM_WEBHOOK_SECRET: without it everything is refused"
            ),
        )
    )
    rows += _form_rows(base, s)
    rows.append(("Health (monitoring)", f"{base}/api/health", ""))
    rows.append(("Metrics (Prometheus)", f"{base}/metrics", ""))
    rows += _page_rows(base, s)
    width = max(len(label) for label, _, _ in rows) + 2
    lines = ["", "Addresses to paste into each provider:"]
    if warning:
        lines.append(warning)
    for label, url, note in rows:
        lines.append(f"  {label + ':':<{width}}{url}" + (f"  ({note})" if note else ""))
    return lines


def _page_rows(base: str, s: Settings) -> list[tuple[str, str, str]]:
    """The pages people open: closed (404) until their token is set."""
    dashboard_secret = "DASHBOARD_TOKEN" if s.dashboard_token is not None else "METRICS_TOKEN"
    dashboard_note = (
        ""
        if s.dashboard_token is not None or s.metrics_token is not None
        else "set DASHBOARD_TOKEN: without it (or METRICS_TOKEN) the page is closed"
    )
    panel_note = (
        "Chatwoot: Settings > Integrations > Dashboard Apps"
        if s.chatwoot_panel_token is not None
        else "set CHATWOOT_PANEL_TOKEN: without it the panel is closed"
    )
    return [
        ("Sales dashboard", f"{base}/dashboard?token=<{dashboard_secret}>", dashboard_note),
        ("Chatwoot lead panel", f"{base}/chatwoot/panel?token=<CHATWOOT_PANEL_TOKEN>", panel_note),
    ]


def _form_rows(base: str, s: Settings) -> list[tuple[str, str, str]]:
    """Where form leads come in (Lead Ads shares the Meta URL)."""
    rows: list[tuple[str, str, str]] = []
    rows.append(
        (
            "Website forms",
            f"{base}/api/leads",
            "Authorization: Bearer <LEADS_API_KEY>"
            + (
                "" if s.leads_api_key is not None else "; set LEADS_API_KEY: without it everything is refused"
            ),
        )
    )
    rows.append(
        (
            "RD Station (conversion)",
            f"{base}/webhooks/rdstation?token=<RDSTATION_WEBHOOK_SECRET>",
            ""
            if s.rdstation_webhook_secret is not None
            else "set RDSTATION_WEBHOOK_SECRET: without it RD Station is refused",
        )
    )
    return rows
