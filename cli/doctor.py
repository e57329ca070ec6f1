"""`python main.py doctor`: does every configured integration really work with what was pasted?

An operator sets the bot up by copying ids and tokens out of half a dozen dashboards. A
wrong one stays silent until the first lead writes and nothing happens, or the CRM never
gets the deal. The doctor makes one harmless, read-only call per configured integration,
at the same time and with a short deadline, and says in plain words what is wrong and
what to do (the doctor's own words are English like the rest of the CLI; a probe's detail
comes from the adapter that ran it); then it prints the webhook URLs to paste into each provider.

The doctor only orchestrates and prints: each adapter and client carries its own probe
(the provider's URL, headers and what its answers mean live with the code that calls the
provider), and gets a `ProbeIO` (web/probe_io.py) that words transport failures. Adding a
provider is one `Check` in `CHECKS`: a name, the env vars that turn it on, the
`*_configured` predicate of `Settings`, and how to reach its probe.

Nothing printed can carry a secret: every line goes through the same verbatim redaction
of configured secrets as the logs, provider error texts are cut short and pass the log
scrubber, and transport failures are reported by kind and host only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import aiohttp

from agent.llm import LLMClient
from channels.base import prober
from channels.provider_http import scrub
from channels.registry import build_channels
from cli.webhook_urls import webhook_lines
from core.logging import Scrubber
from core.probe import ProbeIO, ProbeResult, ProbeVerdict, ok, problem
from core.settings import Settings
from integrations.chatwoot import ChatwootClient
from integrations.google_calendar import GoogleCalendarClient, GoogleCalendarError
from integrations.meta_capi import MetaCapiClient
from integrations.meta_leads import MetaLeadsClient
from integrations.piperun import PipeRunClient
from runtime.sellers import Seller, SellersError, load_sellers
from store.supabase_probe import probe_supabase
from web.configs.agent import llm_config
from web.configs.channels import channels_config
from web.configs.integrations import (
    chatwoot_config,
    google_calendar_config,
    meta_capi_config,
    meta_leads_config,
    piperun_config,
)
from web.probe_io import ProbeContext

DEFAULT_TIMEOUT_S = 10.0
_LABEL_WIDTH = 10

# A probe: given the settings, the doctor's one HTTP session and its ProbeIO, the verdict.
Probe = Callable[[Settings, aiohttp.ClientSession, ProbeIO], Awaitable[ProbeResult]]


@dataclass(frozen=True)
class Check:
    """One integration. `required` are the env vars `configured` depends on (listed when
    missing), `optional` the ones worth mentioning, `url_env` where its address comes from
    (named when the address does not answer)."""

    name: str
    configured: Callable[[Settings], bool]
    probe: Probe
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    url_env: str | None = None


def _channel_probe(name: str) -> Probe:
    async def probe(settings: Settings, _session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
        channel = prober(build_channels(channels_config(settings))[name])
        if channel is None:  # every provider channel has one; a missing probe is a bug here
            raise LookupError(f"channel {name} has no probe")
        return await channel.probe(io)

    return probe


async def _openai(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    return await LLMClient(llm_config(settings), session).probe(io)


async def _chatwoot(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    return await ChatwootClient(chatwoot_config(settings), session).probe(io)


async def _piperun(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    return await PipeRunClient(piperun_config(settings), session).probe(io)


async def _meta_capi(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    try:
        client = MetaCapiClient(meta_capi_config(settings), session)
    except ValueError:  # the client refuses a pixel id that is not digits: it goes in the URL path
        return problem(
            "invalid pixel (dataset) id: META_PIXEL_ID must be digits only",
            "copy the dataset id (Events Manager → Settings) into META_PIXEL_ID",
        )
    return await client.probe(io)


async def _meta_leads(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    return await MetaLeadsClient(meta_leads_config(settings), session).probe(io)


async def _google_calendar(settings: Settings, session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    """Every seller's calendar in prompts/sellers.toml, as the booking reaches it: a token
    minted for the seller (the service account acting as their e-mail), then the calendar
    read. One line for all of them: OK only when every seller's calendar answers, else
    the first seller whose calendar does not, by name, with the probe's own words."""
    try:
        sellers = list(load_sellers())
        config = google_calendar_config(settings)
    except SellersError as exc:
        return problem(f"prompts/sellers.toml cannot be read: {exc}", "fix the file and run the doctor again")
    except GoogleCalendarError as exc:
        detail, _, hint = io.scrub(str(exc)).partition(". ")
        return problem(detail, hint)
    if not sellers:
        return problem(
            "MEETINGS_ENABLED is on but prompts/sellers.toml names no seller: no calendar to book in",
            "add the sellers ([[sellers]] with name, email and calendar_id) to prompts/sellers.toml",
        )
    client = GoogleCalendarClient(config, session)

    async def one(seller: Seller) -> ProbeResult:
        return await client.probe(
            io, calendar_id=seller.calendar_id, credentials=config.credentials_for(subject=seller.email)
        )

    results = await asyncio.gather(*(one(seller) for seller in sellers))
    failed = [(seller, result) for seller, result in zip(sellers, results, strict=True) if not result.ok]
    if failed:
        seller, result = failed[0]
        others = f" (and {len(failed) - 1} more seller(s))" if len(failed) > 1 else ""
        return problem(
            f"seller {seller.name} ({seller.key}): {result.detail}{others}",
            result.hint or "check the seller's calendar_id in prompts/sellers.toml",
        )
    names = ", ".join(seller.name for seller in sellers)
    return ok(f"{len(sellers)} seller calendar(s) reachable ({names})")


async def _supabase(settings: Settings, _session: aiohttp.ClientSession, io: ProbeIO) -> ProbeResult:
    return await probe_supabase(settings.supabase_url, settings.supabase_service_role_key, io)


CHECKS: tuple[Check, ...] = (
    Check(
        "OpenAI",
        lambda s: s.openai_configured,
        _openai,
        ("OPENAI_API_KEY",),
        ("OPENAI_MODEL",),
        "OPENAI_BASE_URL",
    ),
    Check(
        "Z-API",
        lambda s: s.zapi_configured,
        _channel_probe("zapi"),
        ("ZAPI_INSTANCE_ID", "ZAPI_INSTANCE_TOKEN"),
        ("ZAPI_CLIENT_TOKEN",),
        "ZAPI_BASE_URL",
    ),
    Check(
        "WAHA",
        lambda s: s.waha_configured,
        _channel_probe("waha"),
        ("WAHA_URL",),
        ("WAHA_API_KEY", "WAHA_SESSION"),
        "WAHA_URL",
    ),
    Check(
        "WhatsApp Cloud",
        lambda s: s.whatsapp_cloud_configured,
        _channel_probe("whatsapp_cloud"),
        ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
    Check(
        "Instagram",
        lambda s: s.instagram_configured,
        _channel_probe("instagram"),
        ("INSTAGRAM_ACCOUNT_ID", "INSTAGRAM_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
    Check(
        "Chatwoot",
        lambda s: s.chatwoot_configured,
        _chatwoot,
        ("CHATWOOT_API_URL", "CHATWOOT_API_TOKEN", "CHATWOOT_ACCOUNT_ID"),
        ("CHATWOOT_INBOX_ID",),
        "CHATWOOT_API_URL",
    ),
    Check(
        "Supabase",
        lambda s: s.supabase_configured,
        _supabase,
        ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"),
        url_env="SUPABASE_URL",
    ),
    Check(
        "PipeRun",
        lambda s: s.piperun_configured,
        _piperun,
        ("PIPERUN_API_TOKEN", "PIPERUN_PIPELINE_ID", "PIPERUN_STAGE_ID"),
        url_env="PIPERUN_API_URL",
    ),
    Check(
        "Google Calendar",
        lambda s: (
            s.meetings_enabled
            and (s.google_service_account_json is not None or s.google_service_account_file is not None)
        ),
        _google_calendar,
        ("MEETINGS_ENABLED", "GOOGLE_SERVICE_ACCOUNT_JSON"),
        ("GOOGLE_SERVICE_ACCOUNT_FILE",),
        "GOOGLE_CALENDAR_API_URL",
    ),
    Check(
        "Meta CAPI",
        lambda s: s.meta_capi_configured,
        _meta_capi,
        ("META_PIXEL_ID", "META_ACCESS_TOKEN"),
        url_env="META_GRAPH_URL",
    ),
    Check(
        "Meta Lead Ads",
        lambda s: s.meta_page_access_token is not None,
        _meta_leads,
        ("META_PAGE_ACCESS_TOKEN",),
        url_env="META_GRAPH_URL",
    ),
)


# --- running and printing ---------------------------------------------------------------


# Which check is which channel: the channel itself says whether its webhook can be
# authenticated (the same rule that makes the route refuse), the doctor only words it.
_CHECK_CHANNELS = {
    "Z-API": "zapi",
    "WAHA": "waha",
    "WhatsApp Cloud": "whatsapp_cloud",
    "Instagram": "instagram",
}
# WAHA also takes a URL token when it cannot sign.
_ALTERNATIVES = {"WAHA_WEBHOOK_HMAC_KEY": "WAHA_WEBHOOK_HMAC_KEY or WAHA_WEBHOOK_SECRET"}


def _webhook_secret_problem(settings: Settings, check: Check) -> ProbeResult | None:
    name = _CHECK_CHANNELS.get(check.name)
    missing = build_channels(channels_config(settings))[name].missing_webhook_secret if name else None
    if not missing:
        return None
    wanted = _ALTERNATIVES.get(missing, missing)
    return problem(
        f"without {wanted} the webhook refuses everything: no lead message gets in",
        f"set {wanted} (a long random secret) and use it in the webhook address below",
    )


async def _run_check(
    settings: Settings, session: aiohttp.ClientSession, check: Check, io: ProbeContext
) -> ProbeResult:
    """Never raises: whatever goes wrong becomes a PROBLEM line, so one broken provider
    cannot hide the verdicts on the others. A provider that answers but whose webhook has
    no secret is still a problem: the bot would refuse every message it sends."""
    result = await _probe(settings, session, check, io)
    if result.ok:
        return _webhook_secret_problem(settings, check) or result
    return result


async def _probe(
    settings: Settings, session: aiohttp.ClientSession, check: Check, io: ProbeContext
) -> ProbeResult:
    try:
        # A probe may make two calls (Chatwoot) or open a client (Supabase): room for that.
        async with asyncio.timeout(io.timeout_s * 3):
            return await check.probe(settings, session, io)
    except ProbeVerdict as verdict:
        return verdict.result
    except TimeoutError:
        return io.timed_out()
    except Exception as exc:  # the text may carry a URL with a token: only the kind
        return problem(
            f"unexpected error while checking ({type(exc).__name__})",
            "run it again; if it persists, open an issue with this line",
        )


def _missing(settings: Settings, check: Check) -> list[str]:
    # A switch that is off (MEETINGS_ENABLED) is missing too.
    missing = [env for env in check.required if getattr(settings, env.lower(), None) in (None, "", False)]
    return missing or list(check.required)


def _not_configured_line(settings: Settings, check: Check) -> str:
    line = f"{check.name}: not configured; to use it, set {', '.join(_missing(settings, check))}"
    if check.optional:
        line += f" (optional: {', '.join(check.optional)})"
    return line


async def run_doctor(
    settings: Settings,
    session: aiohttp.ClientSession,
    out: TextIO,
    *,
    checks: Sequence[Check] = CHECKS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int:
    """Check every configured integration at once and print one line each, then the
    webhook URLs. Returns 0 when everything configured answered as expected, else 1."""
    secrets = settings.secret_values()
    scrubber = Scrubber(secrets)

    def emit(line: str = "") -> None:
        out.write(scrub(line, secrets) + "\n")

    active = [c for c in checks if c.configured(settings)]
    emit(
        f"Checking {len(active)} configured integration(s), one read-only call each (limit {timeout_s:g} s)…"
    )
    emit()
    results = await asyncio.gather(
        *(
            _run_check(settings, session, c, ProbeContext(session, timeout_s, c.url_env, scrubber))
            for c in active
        )
    )
    verdicts = dict(zip((c.name for c in active), results, strict=True))
    failed: list[str] = []
    for check in checks:
        result = verdicts.get(check.name)
        if result is None:
            emit(f"{'--':<{_LABEL_WIDTH}}{_not_configured_line(settings, check)}")
        elif result.ok:
            emit(f"{'OK':<{_LABEL_WIDTH}}{check.name}: {result.detail}")
        else:
            failed.append(check.name)
            what_to_do = f". What to do: {result.hint}" if result.hint else ""
            emit(f"{'PROBLEM':<{_LABEL_WIDTH}}{check.name}: {result.detail}{what_to_do}")
    emit()
    if failed:
        emit(f"{len(failed)} problem(s): {', '.join(failed)}. Fix them and run python main.py doctor again.")
    elif active:
        emit("All configured integrations work.")
    else:
        emit("No integration configured yet: fill in .env (see .env.example).")
    for line in webhook_lines(settings):
        emit(line)
    return 1 if failed else 0


__all__ = ["CHECKS", "Check", "run_doctor"]
