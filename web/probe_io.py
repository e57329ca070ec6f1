"""The one read-only GET lent to each provider's probe (`core.probe.ProbeIO`), by the
doctor and by /api/health's credential checks (web/provider_checks.py).

Transport failures, timeouts and answers no probe recognises are worded here once, for an
operator, in pt-BR; a provider's probe only words what its own answers mean. Nothing it
returns can carry a secret: provider texts are cut short and scrubbed, and transport
failures are reported by kind and host only (their text can carry a URL with a token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from channels.provider_http import error_detail
from core.logging import Scrubber
from core.probe import ProbeReply, ProbeResult, ProbeVerdict, problem

_QUOTE_MAX = 120
# "waha:3000" (no scheme) is refused before any connection; older aiohttp lacks the class.
_BAD_URL = (aiohttp.InvalidURL, getattr(aiohttp, "NonHttpUrlClientError", aiohttp.InvalidURL))


@dataclass
class ProbeContext:
    """The caller's side of `ProbeIO`: the shared HTTP session, the deadline, the setting
    that names the provider's address (quoted when it does not answer) and the scrubber."""

    session: aiohttp.ClientSession
    timeout_s: float
    url_env: str | None
    scrubber: Scrubber

    async def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> ProbeReply:
        host = _host(url)
        try:
            async with self.session.get(
                url,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
        except TimeoutError:  # asyncio.TimeoutError and aiohttp's ServerTimeoutError
            raise ProbeVerdict(self.timed_out()) from None
        except _BAD_URL:
            raise ProbeVerdict(
                problem(
                    "invalid URL",
                    f"check {self.url_env or 'the URL'}: use the full address, with http:// or https://",
                )
            ) from None
        except aiohttp.ClientConnectorCertificateError:
            raise ProbeVerdict(
                problem(
                    f"invalid HTTPS certificate at {host}",
                    f"check {self.url_env or 'the URL'} and the server's certificate",
                )
            ) from None
        except aiohttp.ClientConnectorError:
            raise ProbeVerdict(self.unreachable(host)) from None
        except aiohttp.ClientError as exc:
            # Only the kind: the exception text can carry the URL (and the Z-API token).
            raise ProbeVerdict(
                problem(
                    f"connection to {host} failed ({type(exc).__name__})",
                    f"run again; if it persists, check the network and {self.url_env or 'the configured URL'}",
                )
            ) from None
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return ProbeReply(status, text, data)

    def timed_out(self) -> ProbeResult:
        return problem(
            f"timeout: no answer within {self.timeout_s:g} s",
            "the service is slow or down; run again in a few minutes"
            + (f" and check {self.url_env}" if self.url_env else ""),
        )

    def unreachable(self, host: str) -> ProbeResult:
        where = f"check {self.url_env}, " if self.url_env else "check "
        return problem(
            f"URL unreachable ({host} does not answer)",
            f"{where}that the server is up and that this machine can reach it (DNS, firewall)",
        )

    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        """The provider's own words, short and scrubbed (error bodies echo our tokens)."""
        text = error_detail(reply.text, paths or (("error",), ("message",)))
        text = " ".join(str(self.scrubber.scrub(text)).split())
        return text[:_QUOTE_MAX] + ("…" if len(text) > _QUOTE_MAX else "")

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        said = self.provider_words(reply, *paths) if not reply.ok else ""
        if reply.status == 429:
            return problem("request limit reached (HTTP 429)", "wait a minute and run the doctor again")
        if reply.status >= 500:
            return problem(
                f"the service answered with an error (HTTP {reply.status}{': ' + said if said else ''})",
                "the fault is on the provider's side; run again in a few minutes",
            )
        return problem(
            f"unexpected answer (HTTP {reply.status}{': ' + said if said else ''})",
            f"check {self.url_env or 'the configuration'}; if it is right, run again later",
        )

    def scrub(self, text: str) -> str:
        return str(self.scrubber.scrub(text))


def _host(url: str) -> str:
    try:
        return URL(url).host or "?"
    except (TypeError, ValueError):
        return "?"
