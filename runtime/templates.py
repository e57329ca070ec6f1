"""Which approved WhatsApp template goes out for which purpose, and what fills its
variables, from prompts/whatsapp_templates.toml.

Outside Meta's 24-hour window only an approved template is delivered. Each purpose (the
bot's reply hit the closed window; a seller writes first; a form lead's first touch; a
meeting reminder) has its own template, and its {{1}}, {{2}}... are filled from what the
bot knows of the lead, with the file's defaults where it knows nothing (Meta refuses an
empty parameter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.config_files import read_toml
from core.lead import LeadProfile
from core.records import LeadRecord

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "whatsapp_templates.toml"

REENGAGE = "reengage"
SELLER_START = "seller_start"
# A lead who filled a form never wrote: no window is open, only a template reaches them.
FIRST_TOUCH = "first_touch"
# A meeting reminder (runtime/meeting_reminders.py) to a lead whose window is closed.
MEETING_REMINDER = "meeting_reminder"
PURPOSES = (REENGAGE, SELLER_START, FIRST_TOUCH, MEETING_REMINDER)
# Purposes that never borrow [reengage]'s template: "can I still help?" is no greeting,
# nor a reminder of a meeting.
OWN_TEMPLATE_ONLY = frozenset({FIRST_TOUCH, MEETING_REMINDER})
VARIABLES = ("primeiro_nome", "nome", "produto", "empresa")
# The meeting's time (on the lead's clock, as the reminder text says it) and seller: only a
# meeting reminder knows them.
MEETING_VARIABLES = ("quando", "vendedor")


class TemplatesError(ValueError):
    """prompts/whatsapp_templates.toml is missing, malformed or names an unknown variable."""


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class TemplateBook:
    """Per purpose: the file's template, else WHATSAPP_REENGAGE_TEMPLATE; None: no template."""

    templates: Mapping[str, Template] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)

    def for_purpose(self, purpose: str | None) -> Template | None:
        chosen = self.templates.get(purpose or REENGAGE)
        if chosen is not None or purpose in OWN_TEMPLATE_ONLY:
            return chosen
        return self.templates.get(REENGAGE)

    def parameters(
        self, template: Template, lead: LeadRecord | None, extra: Mapping[str, str] | None = None
    ) -> list[str]:
        """{{1}}, {{2}}... in order: from the lead, from `extra` (a meeting reminder's time
        and seller), else the file's [padroes] (Meta refuses an empty parameter)."""
        values = {**_lead_values(lead), **(extra or {})}
        return [values.get(name) or self.defaults.get(name) or name for name in template.parameters]


def _lead_values(lead: LeadRecord | None) -> dict[str, str]:
    if lead is None:
        return {}
    profile = LeadProfile.model_validate(lead.profile or {})
    name = (profile.name or lead.name or "").strip()
    return {
        "nome": name,
        "primeiro_nome": name.split()[0] if name else "",
        "produto": (profile.product_interest or "").strip(),
        "empresa": (profile.company or "").strip(),
    }


def load_templates(
    *,
    fallback_name: str | None,
    fallback_language: str,
    path: Path | None = None,
    first_touch_name: str | None = None,
) -> TemplateBook:
    """The book; `fallback_name`/`fallback_language`: WHATSAPP_REENGAGE_TEMPLATE and
    WHATSAPP_TEMPLATE_LANGUAGE, for a purpose whose name/language the file leaves empty;
    `first_touch_name`: WHATSAPP_FIRST_TOUCH_TEMPLATE, for an empty [first_touch]."""
    source = path or DEFAULT_PATH
    data = read_toml(source, what="WhatsApp templates", error=TemplatesError)
    templates: dict[str, Template] = {}
    for purpose in PURPOSES:
        section = data.get(purpose, {})
        if not isinstance(section, dict):
            raise TemplatesError(f"{source}: [{purpose}] must be a table")
        name = str(section.get("name") or "").strip()
        if purpose == REENGAGE:
            name = name or (fallback_name or "").strip()
        if purpose == FIRST_TOUCH:
            name = name or (first_touch_name or "").strip()
        # Any other purpose left empty takes [reengage]'s template (`for_purpose`).
        if not name:
            continue
        parameters = section.get("parameters", [])
        if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
            raise TemplatesError(f"{source}: [{purpose}] parameters must be a list of names")
        known = VARIABLES + MEETING_VARIABLES if purpose == MEETING_REMINDER else VARIABLES
        unknown = [p for p in parameters if p not in known]
        if unknown:
            raise TemplatesError(
                f"{source}: [{purpose}] unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        language = str(section.get("language") or "").strip() or fallback_language
        templates[purpose] = Template(name=name, language=language, parameters=tuple(parameters))
    defaults = data.get("padroes", {})
    if not isinstance(defaults, dict):
        raise TemplatesError(f"{source}: [padroes] must be a table")
    return TemplateBook(templates=templates, defaults={k: str(v) for k, v in defaults.items()})
