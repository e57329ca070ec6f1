"""prompts/whatsapp_templates.toml: one approved template per purpose, its variables
filled from what the bot knows of the lead, a broken file stopping the bot at start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.records import LeadRecord
from runtime.templates import TemplatesError, load_templates


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "whatsapp_templates.toml"
    path.write_text(text, encoding="utf-8")
    return path


def lead(**fields: object) -> LeadRecord:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "id": 1,
        "contact_key": "whatsapp:5511987650001",
        "channel": "whatsapp_cloud",
        "contact_id": "5511987650001",
        "phone": "5511987650001",
        "name": None,
        "profile": {},
        "score": 0,
        "temperature": "frio",
        "score_reasons": [],
        "lead_message_count": 1,
        "opted_out": False,
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return LeadRecord(**values)  # type: ignore[arg-type]


def test_the_shipped_file_uses_the_environments_template_without_variables() -> None:
    book = load_templates(fallback_name="retomar_contato", fallback_language="pt_BR")
    reengage = book.for_purpose(None)
    assert reengage is not None and (reengage.name, reengage.parameters) == ("retomar_contato", ())
    # No seller_start of its own: the reengage template serves it.
    assert book.for_purpose("seller_start") == reengage


def test_without_any_template_there_is_none_to_send() -> None:
    book = load_templates(fallback_name=None, fallback_language="pt_BR")
    assert book.for_purpose(None) is None and book.for_purpose("seller_start") is None


def test_variables_come_from_the_lead_and_fall_back_to_the_files_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[reengage]
name = "retomar_conversa"
language = "en_US"
parameters = ["primeiro_nome", "produto", "empresa"]
[seller_start]
name = "vendedor"
parameters = ["nome"]
[padroes]
primeiro_nome = "cliente"
produto = "nossos produtos"
empresa = "sua empresa"
""",
    )
    book = load_templates(fallback_name="from_env", fallback_language="pt_BR", path=path)
    reengage = book.for_purpose("reengage")
    assert reengage is not None and reengage.language == "en_US"
    known = lead(name="Maria Souza", profile={"product_interest": "FB300"})
    assert book.parameters(reengage, known) == ["Maria", "FB300", "sua empresa"]
    assert book.parameters(reengage, lead()) == ["cliente", "nossos produtos", "sua empresa"]
    seller = book.for_purpose("seller_start")
    assert seller is not None and (seller.name, seller.language) == ("vendedor", "pt_BR")
    assert book.parameters(seller, known) == ["Maria Souza"]


def test_an_unknown_variable_stops_the_bot_naming_the_file_and_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, '[reengage]\nname = "x"\nparameters = ["cpf"]\n')
    with pytest.raises(TemplatesError, match=r"unknown parameter\(s\) cpf; known: primeiro_nome"):
        load_templates(fallback_name=None, fallback_language="pt_BR", path=path)


def test_only_a_meeting_reminder_may_ask_for_the_meeting_s_time_and_seller(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[meeting_reminder]\nname = "lembrete"\nparameters = ["primeiro_nome", "quando", "vendedor"]\n'
        '[padroes]\nquando = "no horário combinado"\n',
    )
    book = load_templates(fallback_name=None, fallback_language="pt_BR", path=path)
    reminder = book.for_purpose("meeting_reminder")
    assert reminder is not None
    values = {"quando": "amanhã (quinta, 03/12) às 15h", "vendedor": "Ana"}
    assert book.parameters(reminder, lead(name="Maria Souza"), values) == [
        "Maria",
        "amanhã (quinta, 03/12) às 15h",
        "Ana",
    ]
    assert book.parameters(reminder, lead(name="Maria Souza"))[1] == "no horário combinado"
    wrong = write(tmp_path, '[reengage]\nname = "x"\nparameters = ["quando"]\n')
    with pytest.raises(TemplatesError, match=r"\[reengage\] unknown parameter\(s\) quando"):
        load_templates(fallback_name=None, fallback_language="pt_BR", path=wrong)


def test_a_file_that_is_not_toml_names_itself(tmp_path: Path) -> None:
    path = write(tmp_path, "[reengage\n")
    with pytest.raises(TemplatesError, match="not valid TOML"):
        load_templates(fallback_name=None, fallback_language="pt_BR", path=path)
