"""The words PipeRun shows the sellers: deal title and lead-card note, from prompts/piperun.toml.

Notes are HTML: public integrations join note lines with `<br>`, so values are escaped
and lines joined the same way.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config_files import read_toml
from core.lead import PROFILE_FIELDS, LeadProfile, describe_lead, display_value, field_label
from core.paths import PROJECT_ROOT
from integrations.piperun.card import LeadCard

DEFAULT_TEXTS_PATH = PROJECT_ROOT / "prompts" / "piperun.toml"
# Notes are rendered as HTML by PipeRun (see module docstring).
NOTE_LINE_BREAK = "<br>"
_TITLE_MAX = 150


class PipeRunTextsError(ValueError):
    """prompts/piperun.toml is unusable; raised at load so a typo never reaches the CRM."""


_PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
NOTE_PLACEHOLDERS = frozenset(
    {"lead", "canal", "temperatura", "pontuacao", "motivos", "perfil", "resumo", "conversa", "referencia"}
)
_TEXT_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "deal_title": frozenset({"lead", "canal", "temperatura"}),
    "person_without_name": frozenset({"canal"}),
    "company_without_name": frozenset({"cnpj"}),
    "note": NOTE_PLACEHOLDERS,
}
# Without {referencia} a note could not be found again after a lost id: a second note.
_REQUIRED = {"note": frozenset({"referencia"})}


@dataclass(frozen=True, slots=True)
class PipeRunTexts:
    deal_title: str
    person_without_name: str
    company_without_name: str
    note: str


def load_piperun_texts(path: Path | str | None = None) -> PipeRunTexts:
    """Read and check prompts/piperun.toml; any problem names the file and the key."""
    file = Path(path) if path is not None else DEFAULT_TEXTS_PATH
    data = read_toml(file, what="PipeRun texts", error=PipeRunTextsError)
    values: dict[str, str] = {}
    for key, allowed in _TEXT_PLACEHOLDERS.items():
        text = data.get(key)
        if not isinstance(text, str) or not text.strip():
            raise PipeRunTextsError(f"{file}: '{key}' is required and must be text")
        used = set(_PLACEHOLDER_RE.findall(text))
        unknown = used - allowed
        if unknown:
            raise PipeRunTextsError(
                f"{file}: '{key}' has unknown placeholder(s) {sorted('{' + u + '}' for u in unknown)}; "
                f"allowed: {sorted('{' + a + '}' for a in allowed)}"
            )
        missing = _REQUIRED.get(key, frozenset()) - used
        if missing:
            raise PipeRunTextsError(f"{file}: '{key}' must contain {sorted('{' + m + '}' for m in missing)}")
        values[key] = text.strip()
    return PipeRunTexts(**values)


@lru_cache(maxsize=1)
def default_texts() -> PipeRunTexts:
    return load_piperun_texts()


def fill(template: str, values: Mapping[str, str]) -> str:
    """One pass over a closed list of names: braces inside values are never interpreted."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _lead_label(card: LeadCard, texts: PipeRunTexts) -> str:
    if card.name and card.company:
        return f"{card.name} ({card.company})"
    return card.name or card.company or fill(texts.person_without_name, {"canal": card.channel_name})


def _profile_lines(card: LeadCard) -> list[str]:
    """ "Label: value" lines, the same wording as the Chatwoot card (describe_lead)."""
    merged: dict[str, Any] = {
        k: v for k, v in card.profile.items() if k != "provenance" and v is not None and v != ""
    }
    for name in ("name", "phone", "email", "company", "cnpj", "city", "state"):
        if merged.get(name) is None and getattr(card, name) is not None:
            merged[name] = getattr(card, name)
    known = {k: v for k, v in merged.items() if k in PROFILE_FIELDS}
    try:
        lines = describe_lead(LeadProfile.model_validate(known))
    except ValidationError:
        lines = [f"{field_label(k)}: {display_value(k, v)}" for k, v in known.items()]
    extras = sorted(k for k in merged if k not in PROFILE_FIELDS and not isinstance(merged[k], (dict, list)))
    return lines + [f"{field_label(k)}: {display_value(k, merged[k])}" for k in extras]


def render_deal_title(card: LeadCard, texts: PipeRunTexts | None = None) -> str:
    texts = texts or default_texts()
    values = {
        "lead": _lead_label(card, texts),
        "canal": card.channel_name,
        "temperatura": card.temperature or "",
    }
    title = " ".join(fill(texts.deal_title, values).split())
    return title[:_TITLE_MAX] or _lead_label(card, texts)


def render_note(card: LeadCard, *, reference: str, texts: PipeRunTexts | None = None) -> str:
    """The lead card as the note's HTML: template blocks whose data is unknown are left out."""
    texts = texts or default_texts()
    values = {
        "lead": _lead_label(card, texts),
        "canal": card.channel_name,
        "temperatura": card.temperature or "",
        "pontuacao": "" if card.score is None else str(card.score),
        "motivos": "\n".join(f"• {' '.join(r.split())}" for r in card.score_reasons if r and r.strip()),
        "perfil": "\n".join(_profile_lines(card)),
        "resumo": card.summary or "",
        "conversa": card.chatwoot_url or "",
        "referencia": reference,
    }
    blocks: list[str] = []
    for block in re.split(r"\n[ \t]*\n", texts.note.strip()):
        names = _PLACEHOLDER_RE.findall(block)
        if names and not any(values.get(n) for n in names):
            continue
        lines = []
        for line in block.splitlines():
            used = _PLACEHOLDER_RE.findall(line)
            if used and not any(values.get(n) for n in used):
                continue
            filled = fill(line, values).split("\n")
            lines += [" ".join(part.split()) for part in filled if part.strip()]
        if lines:
            blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)
    return NOTE_LINE_BREAK.join(html.escape(line, quote=False) for line in text.split("\n"))


__all__ = [
    "DEFAULT_TEXTS_PATH",
    "NOTE_LINE_BREAK",
    "NOTE_PLACEHOLDERS",
    "PipeRunTexts",
    "PipeRunTextsError",
    "default_texts",
    "fill",
    "load_piperun_texts",
    "render_deal_title",
    "render_note",
]
