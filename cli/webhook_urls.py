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
            "Atenção: PUBLIC_URL não é HTTPS; Meta e a maioria dos provedores só chamam "
            "endereços https://. Use um domínio com certificado (ex.: atrás de um proxy)."
        )
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "localhost"
    return f"http://{host}:{settings.port}", (
        "Atenção: PUBLIC_URL não está definido, então estes endereços só valem nesta máquina. "
        "Os provedores precisam de uma URL pública HTTPS: defina PUBLIC_URL "
        "(ex.: https://bot.suaempresa.com.br)."
    )


def webhook_lines(settings: Settings) -> list[str]:
    """Secrets are named, never shown: `<ZAPI_WEBHOOK_SECRET>` means "its value"."""
    base, warning = public_base(settings)
    s = settings
    rows: list[tuple[str, str, str]] = []
    if s.zapi_webhook_secret is not None:
        rows.append(("Z-API (Ao receber)", f"{base}/webhooks/zapi?token=<ZAPI_WEBHOOK_SECRET>", ""))
    else:
        rows.append(
            (
                "Z-API (Ao receber)",
                f"{base}/webhooks/zapi",
                "sem ZAPI_WEBHOOK_SECRET o bot recusa tudo que chega aqui; defina um segredo "
                "e acrescente ?token=<ZAPI_WEBHOOK_SECRET>",
            )
        )
    if s.waha_webhook_hmac_key is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha", "chave HMAC no WAHA: o valor de WAHA_WEBHOOK_HMAC_KEY"))
    elif s.waha_webhook_secret is not None:
        rows.append(("WAHA", f"{base}/webhooks/waha?token=<WAHA_WEBHOOK_SECRET>", ""))
    else:
        rows.append(
            (
                "WAHA",
                f"{base}/webhooks/waha",
                "defina WAHA_WEBHOOK_HMAC_KEY ou WAHA_WEBHOOK_SECRET: sem eles o WAHA é recusado",
            )
        )
    meta_note = "token de verificação: o valor de META_VERIFY_TOKEN"
    if s.meta_app_secret is None:
        meta_note += "; defina META_APP_SECRET, sem ele a Meta é recusada"
    rows.append(("Meta (WhatsApp Cloud e Instagram)", f"{base}/webhooks/meta", meta_note))
    rows.append(
        (
            "Chatwoot",
            f"{base}/webhooks/chatwoot?token=<CHATWOOT_WEBHOOK_SECRET>",
            ""
            if s.chatwoot_webhook_secret is not None
            else "defina CHATWOOT_WEBHOOK_SECRET: sem ele o Chatwoot é recusado",
        )
    )
    rows.append(
        (
            "CRM (ganho/perdido/reunião)",
            f"{base}/webhooks/crm?token=<CRM_WEBHOOK_SECRET>",
            "ou o cabeçalho X-Webhook-Secret"
            + (
                ""
                if s.crm_webhook_secret is not None
                else "; defina CRM_WEBHOOK_SECRET: sem ele tudo é recusado"
            ),
        )
    )
    rows.append(("Saúde (monitoramento)", f"{base}/api/health", ""))
    rows.append(("Métricas (Prometheus)", f"{base}/metrics", ""))
    width = max(len(label) for label, _, _ in rows) + 2
    lines = ["", "Endereços para colar em cada provedor:"]
    if warning:
        lines.append(warning)
    for label, url, note in rows:
        lines.append(f"  {label + ':':<{width}}{url}" + (f"  ({note})" if note else ""))
    return lines
