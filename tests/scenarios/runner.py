"""Plays one scenario file against the real bot, faked only at the HTTP boundary.

A scenario (`data/*.json`) is a sales conversation: what the lead writes, what the model
answers for that turn (scripted), and what must be true afterwards — what the lead
received, the profile, the score, the stored rows, the lead's flags and follow-ups.

Step keys
  lead            text the lead sends (Z-API webhook, one unique message id per step)
  id              optional message id for that text (to check provenance against)
  model           the scripted model output for the turn: {reply, lead, tools, summary},
                  a list of them (a repair call), or null when the model must NOT be called
  advance_hours   move the bot's clock forward
  run_follow_ups  run one pass of the follow-up scheduler (needs `model` too)
  note            free text for the reader, ignored
  expect          checks after the step (see `check`)

Scenario keys: `title`, `description`, `clock` (ISO with offset, e.g. a Sunday
"2026-03-01T15:00:00-03:00"; without it, a Wednesday 10:30 in São Paulo, inside business
hours: never the machine's time), `steps`, and
a final `expect` that runs after the last step (its message checks then cover the whole
conversation instead of one step).

Expect keys (only what is listed is checked)
  lead_receives / lead_receives_containing / lead_never_sees / silence
      the WhatsApp bubbles sent to the lead; "{commercial_guard}" and the other keys of
      prompts/messages.toml stand for their text
  model_calls (total so far), model_saw / model_did_not_see (text in the last request)
  profile, known_fields, provenance (field -> message id), temperature, score (an int or
      {"min", "max"}), reasons_containing
  orcamentos, technical_questions (rows in order; `x_containing` checks a substring),
  opted_out, handoff (null or {"state", "reason"})
  follow_ups ({"pending", "sent", "cancelled"} counts), follow_up_rows, follow_up_outcomes
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import zapi_message
from tests.helpers.clock import WEEKDAY_IN_HOURS
from tests.helpers.fakes import FakeOpenAI, FakeZapi
from tests.helpers.settle import settled
from web.keys import FOLLOW_UPS, RUNNER, STORE

DATA = Path(__file__).resolve().parent / "data"

SCENARIO_KEYS = {"title", "description", "clock", "steps", "expect"}
STEP_KEYS = {"lead", "id", "model", "advance_hours", "run_follow_ups", "note", "expect"}
MODEL_KEYS = {"reply", "lead", "tools", "summary", "image_description"}
EXPECT_KEYS = {
    # what the lead received (this step; the whole conversation in the final block)
    "lead_receives",
    "lead_receives_containing",
    "lead_never_sees",
    "silence",
    # the model
    "model_calls",
    "model_saw",
    "model_did_not_see",
    # the lead card
    "profile",
    "known_fields",
    "provenance",
    "temperature",
    "score",
    "reasons_containing",
    # stored rows and flags
    "orcamentos",
    "technical_questions",
    "opted_out",
    "handoff",
    # follow-ups
    "follow_ups",
    "follow_up_rows",
    "follow_up_outcomes",
}


def scenario_files() -> list[Path]:
    return sorted(DATA.glob("*.json"))


def _unknown(keys: Any, allowed: set[str], where: str) -> None:
    extra = set(keys) - allowed
    assert not extra, f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}"


@dataclass
class Scenario:
    bot: TestClient
    openai: FakeOpenAI
    zapi: FakeZapi
    name: str
    now: datetime = WEEKDAY_IN_HOURS
    messages_before_step: int = 0
    outcomes: list[str] | None = None
    counter: int = 0

    # --- the bot -------------------------------------------------------------------
    @property
    def runner(self) -> Any:
        return self.bot.app[RUNNER]

    def rows(self, sql: str, *args: Any) -> list[Any]:
        return [tuple(r) for r in self.bot.app[STORE].db.execute(sql, args)]  # type: ignore[attr-defined]

    def fixed_message(self, text: str) -> str:
        """`{commercial_guard}` and friends stand for the texts in prompts/messages.toml."""
        messages = self.runner.agent.deps.prompts.messages
        return re.sub(r"\{(\w+)\}", lambda m: messages.get(m.group(1), m.group(0)), text)

    # --- playing ---------------------------------------------------------------------
    async def play(self, spec: dict[str, Any]) -> None:
        _unknown(spec, SCENARIO_KEYS, self.name)
        if "clock" in spec:
            self.now = datetime.fromisoformat(spec["clock"])
            assert self.now.tzinfo is not None, f"{self.name}: clock needs an offset, e.g. -03:00"
        self.runner.clock = lambda: self.now
        for number, step in enumerate(spec["steps"], start=1):
            where = f"{self.name} step {number}"
            _unknown(step, STEP_KEYS, where)
            self.messages_before_step = len(self.zapi.sent)
            calls_before = self.openai.chat_calls
            self.outcomes = None
            if "advance_hours" in step:
                self.now = self.now + timedelta(hours=step["advance_hours"])
            scripted = self._script(step, where)
            if "lead" in step:
                await self._lead_writes(step["lead"], step.get("id"))
            if step.get("run_follow_ups"):
                self.outcomes = await self.bot.app[FOLLOW_UPS].run_due()
                await self._deliveries_done()
            if "lead" in step or step.get("run_follow_ups"):
                assert self.openai.chat_calls - calls_before == scripted, (
                    f"{where}: expected {scripted} model call(s), got {self.openai.chat_calls - calls_before}; "
                    f"the lead received {[s['message'] for s in self.zapi.sent[self.messages_before_step :]]}"
                )
            if "expect" in step:
                await self.check(step["expect"], where, since=self.messages_before_step)
        if "expect" in spec:
            await self.check(spec["expect"], f"{self.name} final", since=0)

    def _script(self, step: dict[str, Any], where: str) -> int:
        acts = "lead" in step or step.get("run_follow_ups")
        if not acts:
            assert "model" not in step, f"{where}: `model` only goes with `lead` or `run_follow_ups`"
            return 0
        assert "model" in step, f"{where}: say what the model answers (or null if it must not be called)"
        outputs = step["model"]
        if outputs is None:
            return 0
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for output in outputs:
            _unknown(output, MODEL_KEYS, f"{where} model")
            self.openai.then(**output)
        return len(outputs)

    async def _lead_writes(self, text: str, message_id: str | None) -> None:
        self.counter += 1
        message_id = message_id or f"SCN-{self.name}-{self.counter:03d}"
        response = await self.bot.post("/webhooks/zapi", json=zapi_message(message_id=message_id, text=text))
        assert response.status == 200, await response.text()
        assert (await response.json())["accepted"] == 1, f"message {message_id} not accepted"
        await self._deliveries_done()
        assert self.rows("SELECT status FROM inbound WHERE provider_message_id = ?", message_id) == [
            ("done",)
        ]

    async def _deliveries_done(self) -> None:
        """The turn committed and every side effect delivered (or given up on)."""
        await settled(self.bot)

    # --- checking --------------------------------------------------------------------
    async def check(self, expect: dict[str, Any], where: str, *, since: int) -> None:
        _unknown(expect, EXPECT_KEYS, f"{where} expect")
        sent = [s["message"] for s in self.zapi.sent[since:]]
        joined = "\n\n".join(sent)
        if "lead_receives" in expect:
            assert sent == [self.fixed_message(t) for t in expect["lead_receives"]], (
                f"{where}: lead received {sent}"
            )
        for text in expect.get("lead_receives_containing", []):
            assert self.fixed_message(text) in joined, (
                f"{where}: {text!r} not in what the lead received: {sent}"
            )
        for text in map(self.fixed_message, expect.get("lead_never_sees", [])):
            assert text not in joined, f"{where}: the lead received {text!r}: {sent}"
        if expect.get("silence"):
            assert sent == [], f"{where}: expected silence, the lead received {sent}"

        if "model_calls" in expect:
            assert self.openai.chat_calls == expect["model_calls"], (
                f"{where}: model calls {self.openai.chat_calls}"
            )
        if "model_saw" in expect:
            prompt = json.dumps(self.openai.chat_requests[-1]["messages"], ensure_ascii=False)
            for text in expect["model_saw"]:
                assert text in prompt, f"{where}: the last model call did not see {text!r}"
        if "model_did_not_see" in expect:
            prompt = json.dumps(self.openai.chat_requests[-1]["messages"], ensure_ascii=False)
            for text in expect["model_did_not_see"]:
                assert text not in prompt, f"{where}: the last model call saw {text!r}"

        lead = await self._lead()
        profile = lead.profile if lead else {}
        for name, value in expect.get("profile", {}).items():
            assert profile.get(name) == value, (
                f"{where}: profile.{name} is {profile.get(name)!r}, expected {value!r}"
            )
        if "known_fields" in expect:
            known = sorted(k for k, v in profile.items() if k != "provenance" and v is not None)
            assert known == sorted(expect["known_fields"]), f"{where}: known fields {known}"
        for name, message_id in expect.get("provenance", {}).items():
            source = profile.get("provenance", {}).get(name) or {}
            assert source.get("message_id") == message_id, f"{where}: {name} came from {source}"
        if "temperature" in expect:
            assert lead and lead.temperature == expect["temperature"], (
                f"{where}: temperature {lead and lead.temperature} (score {lead and lead.score}: "
                f"{lead and lead.score_reasons})"
            )
        if "score" in expect:
            want = expect["score"]
            low, high = (want, want) if isinstance(want, int) else (want.get("min", 0), want.get("max", 100))
            assert lead and low <= lead.score <= high, (
                f"{where}: score {lead and lead.score} not in [{low}, {high}]: {lead and lead.score_reasons}"
            )
        for text in expect.get("reasons_containing", []):
            assert lead and any(text in r for r in lead.score_reasons), (
                f"{where}: reasons {lead and lead.score_reasons}"
            )

        store = self.bot.app[STORE]
        if "orcamentos" in expect:
            rows = await store.quotes(lead.contact_key) if lead else []
            _match_rows(rows, expect["orcamentos"], f"{where}: orcamentos")
        if "technical_questions" in expect:
            rows = await store.technical_questions(lead.contact_key) if lead else []
            _match_rows(rows, expect["technical_questions"], f"{where}: technical_questions")
        if "opted_out" in expect:
            assert bool(lead and lead.opted_out) == expect["opted_out"], f"{where}: opted_out"
        if "handoff" in expect:
            want = expect["handoff"]
            if want is None:
                assert not (lead and lead.handoff_state), f"{where}: handoff {lead and lead.handoff_state}"
            else:
                got = {"state": lead and lead.handoff_state, "reason": lead and lead.handoff_reason}
                _match_rows([got], [want], f"{where}: handoff")

        followups = [
            {"attempt": a, "status": s, "reason": r}
            for a, s, r in self.rows("SELECT attempt, status, reason FROM followups ORDER BY id")
        ]
        if "follow_ups" in expect:
            counts = {
                s: sum(1 for f in followups if f["status"] == s) for s in ("pending", "sent", "cancelled")
            }
            for status, count in expect["follow_ups"].items():
                assert counts[status] == count, f"{where}: follow-ups {followups}"
        if "follow_up_rows" in expect:
            _match_rows(followups, expect["follow_up_rows"], f"{where}: follow-ups")
        if "follow_up_outcomes" in expect:
            assert self.outcomes == expect["follow_up_outcomes"], (
                f"{where}: follow-up outcomes {self.outcomes}"
            )

    async def _lead(self) -> Any:
        keys = self.rows("SELECT contact_key FROM leads")
        assert len(keys) <= 1, "a scenario talks to one lead"
        return await self.bot.app[STORE].get_lead(keys[0][0]) if keys else None


def _match_rows(rows: list[dict[str, Any]], expected: list[dict[str, Any]], where: str) -> None:
    """Same number of rows; each listed field equal (or, for `x_containing`, a substring of x)."""
    assert len(rows) == len(expected), f"{where}: {len(rows)} row(s), expected {len(expected)}: {rows}"
    for row, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            if key.endswith("_containing"):
                actual = str(row[key.removesuffix("_containing")])
                assert value in actual, (
                    f"{where}: {key.removesuffix('_containing')} = {actual!r} lacks {value!r}"
                )
            else:
                assert row[key] == value, f"{where}: {key} = {row[key]!r}, expected {value!r} in {row}"
