"""The system prompt and company knowledge, read from text files in `prompts/`.

Prompts are files, not code, so a user re-targets the bot to their company by editing
`prompts/company.toml` and `prompts/knowledge/*.md` without touching Python. The files
are read once (at start) into a `PromptBundle`; each turn only fills placeholders.

Placeholders are filled in a single pass with a closed list of names, so braces inside
the knowledge text or inside something the lead said (a name like "{knowledge}") are
never interpreted. The static part (rules, knowledge) comes before the per-turn part
(time, lead profile) in the template so the provider's prompt cache can reuse it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.budget import SPLIT_MARGIN_TOKENS, count_fixed_text, count_tokens
from agent.knowledge.sources import read_documents
from core.config_files import read_toml
from core.lead import LeadProfile, describe_lead, field_label
from core.paths import PROJECT_ROOT

DEFAULT_PROMPTS_DIR = PROJECT_ROOT / "prompts"

PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "company_name",
        "knowledge",
        # A big catalogue's chunks for this turn (agent/knowledge/); empty when the
        # knowledge goes whole into `{knowledge}`.
        "relevant_knowledge",
        "lead_profile",
        "missing_fields",
        "now",
        "conversation_summary",
        "business_hours",
    }
)
# Fixed texts the code sends without the model (prompts/messages.toml).
REQUIRED_MESSAGES = (
    "turn_failed",
    "opt_out_confirmation",
    "commercial_guard",
    "handoff_now",
    "follow_up_instruction",
    "form_first_touch_instruction",
)
# The rolling summary is capped: it replaces old messages, it must not grow like them.
MAX_SUMMARY_CHARS = 1200
# Without these the bot would answer blind (no knowledge) or re-ask known data.
REQUIRED_PLACEHOLDERS: frozenset[str] = frozenset({"knowledge", "lead_profile", "missing_fields"})

PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")

# A lead-supplied value is data in the prompt, not text the lead may fill at will.
MAX_PROFILE_VALUE_CHARS = 120

_WEEKDAYS = (
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
)


class PromptError(ValueError):
    """The prompt files are unusable; raised at load so a typo never reaches a lead."""


@dataclass(frozen=True, slots=True)
class PromptBundle:
    system_template: str
    knowledge: str
    company_name: str
    timezone: tzinfo
    prompts_dir: Path
    turn_failed_reply: str
    messages: dict[str, str]
    # This turn's retrieved chunks, set on a per-turn copy (agent/graph.py) when the
    # knowledge is over KNOWLEDGE_MAX_TOKENS; the bundle read at start has none.
    relevant_knowledge: str = ""

    def message(self, key: str) -> str:
        return self.messages[key]


def _company_timezone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "America/Sao_Paulo":
            # Slim images may lack tzdata; Brasília time has had no DST since 2019.
            return timezone(timedelta(hours=-3), "BRT")
        raise PromptError(f"unknown timezone {name!r} in company.toml") from None


def load_prompt_bundle(prompts_dir: Path | str | None = None) -> PromptBundle:
    """Read and check every prompt file; any problem names the file at fault."""
    base = Path(prompts_dir) if prompts_dir is not None else DEFAULT_PROMPTS_DIR

    system_path = base / "system.md"
    try:
        template = system_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"system prompt not found: {system_path}") from None
    used = set(PLACEHOLDER_RE.findall(template))
    unknown = used - PLACEHOLDERS
    if unknown:
        raise PromptError(
            f"{system_path}: unknown placeholder(s) {sorted('{' + u + '}' for u in unknown)}; "
            f"allowed: {sorted('{' + p + '}' for p in PLACEHOLDERS)}"
        )
    absent = REQUIRED_PLACEHOLDERS - used
    if absent:
        raise PromptError(f"{system_path}: missing placeholder(s) {sorted('{' + a + '}' for a in absent)}")

    company_path = base / "company.toml"
    company = read_toml(company_path, what="company", error=PromptError)
    company_name = company.get("name")
    if not isinstance(company_name, str) or not company_name.strip():
        raise PromptError(f"{company_path}: 'name' (the company name) is required")
    tz_name = company.get("timezone", "America/Sao_Paulo")
    if not isinstance(tz_name, str):
        raise PromptError(f"{company_path}: 'timezone' must be text, e.g. \"America/Sao_Paulo\"")

    knowledge_dir = base / "knowledge"
    # .md, .txt and PDF datasheets in the house order (agent/knowledge/sources.py); over
    # KNOWLEDGE_MAX_TOKENS the composition keeps only the overview here (agent/knowledge/base.py).
    parts = [doc.text for doc in read_documents(knowledge_dir)]
    if not parts:
        raise PromptError(f"no knowledge found: add at least one .md, .txt or .pdf file to {knowledge_dir}")

    messages_path = base / "messages.toml"
    messages = read_toml(messages_path, what="fixed messages", error=PromptError)
    for key in REQUIRED_MESSAGES:
        value = messages.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PromptError(f"{messages_path}: '{key}' (text) is required")
    fixed = {k: v.strip() for k, v in messages.items() if isinstance(v, str)}
    turn_failed = fixed["turn_failed"]

    return PromptBundle(
        turn_failed_reply=turn_failed,
        messages=fixed,
        system_template=template,
        knowledge="\n\n".join(parts),
        company_name=company_name.strip(),
        timezone=_company_timezone(tz_name),
        prompts_dir=base,
    )


def format_now(now: datetime, tz: tzinfo) -> str:
    """Weekday and local time in pt-BR, so the bot greets right and knows "amanhã"."""
    local = now.astimezone(tz) if now.tzinfo is not None else now
    return f"{_WEEKDAYS[local.weekday()]}, {local:%d/%m/%Y %H:%M}"


def _compact(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_PROFILE_VALUE_CHARS:
        text = text[: MAX_PROFILE_VALUE_CHARS - 1].rstrip() + "…"
    return text


def render_lead_profile(profile: LeadProfile) -> str:
    # The phone is known from the channel; the model only needs to know that it is.
    lines = [f"- {_compact(line)}" for line in describe_lead(profile, include_phone=False)]
    return "\n".join(lines) if lines else "(nada ainda: é o começo da conversa)"


def render_missing_fields(missing: list[str]) -> str:
    if not missing:
        return "(nenhum: qualificação completa; ofereça o orçamento ou falar com um consultor)"
    return "\n".join(f"- {field_label(name)}" for name in missing)


def _system_values(
    bundle: PromptBundle,
    *,
    profile: LeadProfile,
    missing: list[str],
    now: datetime,
    summary: str | None = None,
    business_hours: str | None = None,
) -> dict[str, str]:
    summary_text = (summary or "").strip()[:MAX_SUMMARY_CHARS] or "(início da conversa)"
    return {
        "company_name": bundle.company_name,
        "knowledge": bundle.knowledge,
        "relevant_knowledge": bundle.relevant_knowledge,
        "lead_profile": render_lead_profile(profile),
        "missing_fields": render_missing_fields(missing),
        "now": format_now(now, bundle.timezone),
        "conversation_summary": summary_text,
        "business_hours": business_hours or "Horário do time comercial: não informado.",
    }


def _fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_system_prompt(
    bundle: PromptBundle,
    *,
    profile: LeadProfile,
    missing: list[str],
    now: datetime,
    summary: str | None = None,
    business_hours: str | None = None,
) -> str:
    values = _system_values(
        bundle, profile=profile, missing=missing, now=now, summary=summary, business_hours=business_hours
    )
    return _fill(bundle.system_template, values)


@functools.lru_cache(maxsize=8)
def _template_pieces(template: str) -> tuple[str, ...]:
    # Fixed text and placeholder names, alternating: ("fixed", "name", "fixed", ...).
    return tuple(PLACEHOLDER_RE.split(template))


# Fill-ins that are the same every turn: counted once per process, like the fixed text,
# and kept in the static head of the prompt that the cache reuses (agent/request.py).
STATIC_PLACEHOLDERS = frozenset({"company_name", "knowledge"})


def render_system_prompt_counted(
    bundle: PromptBundle,
    *,
    profile: LeadProfile,
    missing: list[str],
    now: datetime,
    summary: str | None = None,
    business_hours: str | None = None,
) -> tuple[str, int]:
    """The system prompt and its o200k tokens, a few high at most, never low.

    The rules and the knowledge are most of it and never change: they are counted once
    per process, and only what changes per turn (profile, summary, time) is tokenized on
    each turn. Counting pieces apart can split a whitespace run that would have been
    one token; a margin per placeholder covers that.
    """
    values = _system_values(
        bundle, profile=profile, missing=missing, now=now, summary=summary, business_hours=business_hours
    )
    pieces = _template_pieces(bundle.system_template)
    tokens = 0
    per_turn: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            tokens += count_fixed_text(piece)
        elif piece in STATIC_PLACEHOLDERS:
            tokens += count_fixed_text(values[piece])
        else:
            per_turn.append(values.get(piece, "{" + piece + "}"))
    # One tokenizer call for all of them (the newline joining them is one token at most).
    tokens += count_tokens("\n".join(per_turn)) + SPLIT_MARGIN_TOKENS * (len(pieces) // 2)
    return _fill(bundle.system_template, values), tokens


__all__ = [
    "DEFAULT_PROMPTS_DIR",
    "PLACEHOLDERS",
    "PromptBundle",
    "PromptError",
    "format_now",
    "load_prompt_bundle",
    "render_lead_profile",
    "render_missing_fields",
    "render_system_prompt",
    "render_system_prompt_counted",
]
