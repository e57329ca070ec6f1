"""The notes sellers get for a quote request or a technical question, from
prompts/seller_notes.toml.

Read once at start (a broken file stops the bot with its path in the message) and rendered
without I/O: the commit builder puts the note in Chatwoot, the lifecycle puts it on the
PipeRun deal, so both say the same thing in the sellers' words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config_files import read_toml
from core.forms import FormSubmission
from core.lead import field_label
from core.records import QuoteRequest, TechnicalQuestion

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "prompts" / "seller_notes.toml"


class SellerNotesError(ValueError):
    """prompts/seller_notes.toml is missing, malformed or lacks a text."""


@dataclass(frozen=True)
class SellerNotes:
    quote_title: str
    quote_products: str
    quote_quantity: str
    quote_summary: str
    quote_label: str
    question_title: str
    question: str
    question_context: str
    question_label: str
    seller_window_closed: str
    form_title: str
    form_answer: str
    form_message: str
    form_ad: str
    form_campaign: str
    form_form: str
    form_page: str
    form_utm: str
    form_label: str
    form_sources: dict[str, str]

    def quote(self, request: QuoteRequest) -> str:
        return _lines(
            self.quote_title,
            (self.quote_products, "produtos", ", ".join(p for p in request.products if p.strip())),
            (self.quote_quantity, "quantidade", request.quantity),
            (self.quote_summary, "resumo", request.summary),
        )

    def technical_question(self, question: TechnicalQuestion) -> str:
        return _lines(
            self.question_title,
            (self.question, "pergunta", question.question),
            (self.question_context, "contexto", question.context),
        )

    def form(self, submission: FormSubmission) -> str:
        """Everything the lead answered, then what brought them (ad, campaign, page, UTMs)."""
        source = self.form_sources.get(submission.source.value, submission.source.value)
        lines = [self.form_title.replace("{origem}", source)]
        answers = [(field_label(name), value) for name, value in submission.profile.items()]
        answers += [(a.question, a.answer) for a in submission.answers]
        for question, answer in answers:
            if answer.strip():
                filled = self.form_answer.replace("{pergunta}", question)
                lines.append(filled.replace("{resposta}", answer.strip()))
        a = submission.attribution
        utm = " / ".join(
            v for v in (a.utm_source, a.utm_medium, a.utm_campaign, a.utm_content, a.utm_term) if v
        )
        body = _lines(
            "",
            (self.form_message, "mensagem", submission.message),
            (self.form_ad, "anuncio", _named(a.ad_name, a.ad_id)),
            (self.form_campaign, "campanha", _named(a.campaign_name, a.campaign_id)),
            (self.form_form, "formulario", _named(a.form_name, a.form_id or a.conversion_identifier)),
            (self.form_page, "pagina", a.page_url),
            (self.form_utm, "utm", utm),
        )
        return "\n".join(lines + [line for line in body.split("\n") if line])


def _named(name: str | None, ident: str | None) -> str | None:
    if name and ident:
        return f"{name} ({ident})"
    return name or ident


def _lines(title: str, *rows: tuple[str, str, str | None]) -> str:
    """The title, then one line per row whose value is known."""
    lines = [title]
    for template, name, value in rows:
        if value and value.strip():
            # Not str.format: the lead's words may hold braces.
            lines.append(template.replace("{" + name + "}", value.strip()))
    return "\n".join(lines)


_FIELDS = {
    "quote_title": ("orcamento", "title"),
    "quote_products": ("orcamento", "products"),
    "quote_quantity": ("orcamento", "quantity"),
    "quote_summary": ("orcamento", "summary"),
    "quote_label": ("orcamento", "label"),
    "question_title": ("duvida_tecnica", "title"),
    "question": ("duvida_tecnica", "question"),
    "question_context": ("duvida_tecnica", "context"),
    "question_label": ("duvida_tecnica", "label"),
    "seller_window_closed": ("mensagem_do_vendedor", "window_closed"),
    "form_title": ("formulario", "title"),
    "form_answer": ("formulario", "answer"),
    "form_message": ("formulario", "message"),
    "form_ad": ("formulario", "ad"),
    "form_campaign": ("formulario", "campaign"),
    "form_form": ("formulario", "form"),
    "form_page": ("formulario", "page"),
    "form_utm": ("formulario", "utm"),
    "form_label": ("formulario", "label"),
}


def load_seller_notes(path: Path | None = None) -> SellerNotes:
    source = path or DEFAULT_PATH
    data = read_toml(source, what="seller notes", error=SellerNotesError)
    texts: dict[str, Any] = {}
    for field, (table, key) in _FIELDS.items():
        section = data.get(table)
        value = section.get(key) if isinstance(section, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise SellerNotesError(f"{source}: '[{table}] {key}' (a text) is required")
        texts[field] = value
    sources = data.get("formulario", {}).get("origens", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise SellerNotesError(f"{source}: '[formulario.origens]' must map each origin to a text")
    texts["form_sources"] = dict(sources)
    for label in ("quote_label", "question_label", "form_label"):
        if any(ch.isspace() for ch in texts[label].strip()) or texts[label] != texts[label].lower():
            raise SellerNotesError(
                f"{source}: a Chatwoot label is lowercase with no spaces: {texts[label]!r}"
            )
        texts[label] = texts[label].strip()
    return SellerNotes(**texts)
