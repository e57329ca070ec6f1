"""The handoff note the sales team reads in Chatwoot, from prompts/handoff_card.toml.

Read once at start (a broken file stops the bot with its path in the message), then
rendered without I/O by the commit builder (a handoff the model decided) and by the
delivery (a lead whose 24-hour window closed with no template to send).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from core.config_files import read_toml
from core.lead import LeadProfile, describe_lead, field_label, missing_fields

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "handoff_card.toml"


class HandoffCardError(ValueError):
    """prompts/handoff_card.toml is missing, malformed or lacks a text."""


@dataclass(frozen=True)
class HandoffCard:
    title: str
    reason: str
    score: str
    score_reason: str
    summary: str
    missing: str
    window_closed_reason: str
    window_closed_note: str
    window_closed_summary: str
    not_on_whatsapp_reason: str
    not_on_whatsapp_note: str
    not_on_whatsapp_summary: str
    first_touch_no_template_reason: str
    first_touch_no_template_note: str
    first_touch_no_template_summary: str

    def render(
        self,
        *,
        reason: str,
        profile: LeadProfile,
        score: int,
        temperature: str,
        score_reasons: list[str],
        summary: str,
    ) -> str:
        lines = [self.title, _fill(self.reason, motivo=reason)]
        lines += describe_lead(profile)
        lines.append(_fill(self.score, pontuacao=str(score), temperatura=temperature))
        lines += [_fill(self.score_reason, motivo=each) for each in score_reasons]
        lines.append(_fill(self.summary, resumo=summary))
        missing = missing_fields(profile)
        if missing:
            lines.append(_fill(self.missing, campos=", ".join(field_label(f) for f in missing)))
        return "\n".join(lines)

    def window_closed(self) -> str:
        return self.situation(self.window_closed_reason, self.window_closed_note)

    def situation(self, reason: str, note: str) -> str:
        """A handoff the delivery decided (no window, no WhatsApp): title, reason, note."""
        return "\n".join([self.title, _fill(self.reason, motivo=reason), note])


def _fill(template: str, **values: str) -> str:
    # Not str.format: a value (the lead's words) or a stray brace in the file must not
    # be read as a placeholder.
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def load_handoff_card(path: Path | None = None) -> HandoffCard:
    source = path or DEFAULT_PATH
    data = read_toml(source, what="handoff card", error=HandoffCardError)
    texts: dict[str, str] = {}
    for field in fields(HandoffCard):
        value = data.get(field.name)
        if not isinstance(value, str) or not value.strip():
            raise HandoffCardError(f"{source}: '{field.name}' (a text) is required")
        texts[field.name] = value
    return HandoffCard(**texts)
