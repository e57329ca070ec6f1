"""A small `core.probe.ProbeIO` for testing channel probes without the doctor.

It makes the real GET through an aiohttp session (so aioresponses answers it), records
what was asked, turns transport failures into `ProbeVerdict`s and words odd answers
the way a probe expects; the texts are the doctor's, so a probe's own verdicts can be
told from the ones it hands back to the IO.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from channels.provider_http import error_detail, scrub
from core.probe import ProbeReply, ProbeResult, ProbeVerdict, problem


@dataclass
class FakeProbeIO:
    session: aiohttp.ClientSession
    secrets: list[str] = field(default_factory=list)
    timeout_s: float = 5.0
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> ProbeReply:
        self.calls.append({"url": url, "headers": dict(headers or {}), "params": dict(params or {})})
        try:
            async with self.session.get(url, headers=headers, params=params) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
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
        return problem(f"timeout: no answer within {self.timeout_s:g} s", "run again")

    def unreachable(self, host: str) -> ProbeResult:
        return problem(f"URL unreachable ({host} does not answer)", "check the URL")

    def provider_words(self, reply: ProbeReply, *paths: tuple[str, ...]) -> str:
        return self.scrub(error_detail(reply.text, paths or (("error",), ("message",))))[:120]

    def unexpected(self, reply: ProbeReply, *paths: tuple[str, ...]) -> ProbeResult:
        return problem(f"unexpected answer (HTTP {reply.status})", "UNEXPECTED")

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)
