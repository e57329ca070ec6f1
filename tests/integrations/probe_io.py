"""A small ProbeIO for the clients' probe tests: real GETs (behind aioresponses) and
recognisable stand-ins for the doctor's generic verdicts, so a test can tell "the probe
gave its own verdict" from "the probe handed the answer back to the doctor"."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.probe import ProbeReply, ProbeResult, ProbeVerdict, problem


@dataclass
class FakeProbeIO:
    session: aiohttp.ClientSession
    timeout_s: float = 5.0
    secrets: tuple[str, ...] = ()
    # (url, headers, params) of every GET, in order.
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> ProbeReply:
        self.calls.append((url, dict(headers or {}), dict(params or {})))
        try:
            async with self.session.get(
                url, headers=headers, params=params, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            ) as resp:
                status, text = resp.status, await resp.text(errors="replace")
        except TimeoutError:
            raise ProbeVerdict(self.timed_out()) from None
        except aiohttp.ClientError:
            raise ProbeVerdict(self.unreachable("host")) from None
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        return ProbeReply(status, text, data)

    def timed_out(self) -> ProbeResult:
        return problem("TIMEOUT", "")

    def unreachable(self, host: str) -> ProbeResult:
        return problem(f"UNREACHABLE {host}", "")

    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        return self.scrub(reply.text)[:40]

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        return problem(f"UNEXPECTED {reply.status}", self.provider_words(reply, *paths))

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return text
