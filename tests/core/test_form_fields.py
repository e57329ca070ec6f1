"""Form answers -> lead profile: Meta's standard keys and Portuguese names need no
configuration, prompts/lead_forms.toml maps a company's own questions (globally or per
form), and nothing the lead wrote is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.form_fields import (
    DEFAULT_PATH,
    FormFieldMap,
    FormFieldsError,
    MappedForm,
    field_key,
    load_form_field_map,
)
from core.forms import MAX_FORM_ANSWERS

BUILTINS = FormFieldMap()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lead_forms.toml"
    path.write_text(text, encoding="utf-8")
    return path


def qa(mapped: MappedForm) -> dict[str, str]:
    return {a.question: a.answer for a in mapped.answers}


def test_meta_standard_keys_fill_the_profile_without_configuration() -> None:
    mapped = BUILTINS.map(
        "555",
        [
            ("full_name", "Maria Souza"),
            ("email", "maria@agrosouza.com.br"),
            ("phone_number", "+55 11 98765-4321"),
            ("city", "Campinas"),
            ("state", "São Paulo"),
            ("company_name", "Agro Souza"),
        ],
    )
    assert mapped.profile == {
        "name": "Maria Souza",
        "email": "maria@agrosouza.com.br",
        "city": "Campinas",
        "state": "São Paulo",  # raw: the profile merge turns it into SP
        "company": "Agro Souza",
    }
    assert mapped.phone == "+55 11 98765-4321"  # raw, as typed
    assert mapped.answers == []


def test_standard_questions_without_a_profile_field_are_answers_labelled_in_portuguese() -> None:
    mapped = BUILTINS.map(None, [("job_title", "Gerente de compras"), ("zip_code", "13010-000")])
    assert mapped.profile == {}
    assert qa(mapped) == {"Cargo": "Gerente de compras", "CEP": "13010-000"}


def test_first_and_last_name_are_joined_and_full_name_wins() -> None:
    assert BUILTINS.map(None, [("first_name", "Maria"), ("last_name", "Souza")]).profile == {
        "name": "Maria Souza"
    }
    assert BUILTINS.map(None, [("last_name", "Souza")]).profile == {"name": "Souza"}
    both = BUILTINS.map(
        None, [("first_name", "Maria"), ("last_name", "Souza"), ("full_name", "Maria S. Lima")]
    )
    assert both.profile == {"name": "Maria S. Lima"}


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("Nome", "name"),
        ("Empresa", "company"),
        ("Cidade", "city"),
        ("UF", "state"),
        ("Estado", "state"),
        ("Produto", "product_interest"),
        ("CNPJ", "cnpj"),
        ("Segmento", "segment"),
        ("E-mail", "email"),
        ("e_mail", "email"),
    ],
)
def test_common_portuguese_names_fill_the_profile(name: str, target: str) -> None:
    assert BUILTINS.map(None, [(name, "x")]).profile == {target: "x"}


@pytest.mark.parametrize("name", ["telefone", "Celular", "WhatsApp", "Telefone (WhatsApp)"])
def test_portuguese_phone_names_are_the_phone(name: str) -> None:
    mapped = BUILTINS.map(None, [(name, "(11) 98765-4321")])
    assert mapped.phone == "(11) 98765-4321"
    assert mapped.profile == {}


def test_a_second_value_for_a_field_is_kept_as_an_answer_not_lost() -> None:
    mapped = BUILTINS.map(
        None,
        [
            ("email", "maria@gmail.com"),
            ("work_email", "maria@agrosouza.com.br"),
            ("phone_number", "11987654321"),
            ("work_phone_number", "1133334444"),
        ],
    )
    assert mapped.profile == {"email": "maria@gmail.com"}
    assert mapped.phone == "11987654321"
    assert qa(mapped) == {"E-mail de trabalho": "maria@agrosouza.com.br", "Telefone comercial": "1133334444"}


def test_custom_question_without_mapping_is_an_answer_named_after_its_key() -> None:
    mapped = BUILTINS.map(None, [("qual_o_seu_segmento?", "frigorífico"), ("car_make", "Honda")])
    assert mapped.profile == {}
    assert qa(mapped) == {"Qual o seu segmento?": "frigorífico", "Car make": "Honda"}


def test_blank_answers_are_dropped() -> None:
    mapped = BUILTINS.map(None, [("full_name", "  "), ("cidade", ""), ("obs", " ")])
    assert mapped.profile == {} and mapped.answers == [] and mapped.phone is None


def test_answers_are_capped_at_the_form_limit() -> None:
    mapped = BUILTINS.map(None, [(f"pergunta_{i}", "sim") for i in range(MAX_FORM_ANSWERS + 10)])
    assert len(mapped.answers) == MAX_FORM_ANSWERS


# --- prompts/lead_forms.toml -----------------------------------------------------------

COMPANY_TOML = """
[campos]
"Qual o seu segmento?" = "segmento"
quantos_kg_por_dia = "volume"
aceita_receber_novidades = "ignorar"

[rotulos]
quais_equipamentos_procura = "Equipamentos de interesse"

[formularios."555000111222333"]
nome = "Orçamento moedores"

[formularios."555000111222333".campos]
cidade = "resposta"
cidade_da_empresa = "cidade"
quantos_kg_por_dia = "resposta"

[formularios."555000111222333".rotulos]
cidade = "Cidade de entrega"
"""


def test_company_rules_map_custom_questions_ignore_and_label(tmp_path: Path) -> None:
    rules = load_form_field_map(write(tmp_path, COMPANY_TOML))
    mapped = rules.map(
        "999",
        [
            ("qual_o_seu_segmento?", "açougue"),
            ("quantos_kg_por_dia", "300 kg"),
            ("aceita_receber_novidades", "sim"),
            ("quais_equipamentos_procura", "moedor, serra fita"),
            ("cidade", "Campinas"),
        ],
    )
    assert mapped.profile == {"segment": "açougue", "volume": "300 kg", "city": "Campinas"}
    assert qa(mapped) == {"Equipamentos de interesse": "moedor, serra fita"}  # "ignorar" left no trace
    assert mapped.form_name is None


def test_a_form_section_overrides_the_global_rules_for_that_form_only(tmp_path: Path) -> None:
    rules = load_form_field_map(write(tmp_path, COMPANY_TOML))
    answers = [("cidade", "Campinas"), ("cidade_da_empresa", "Jundiaí"), ("quantos_kg_por_dia", "300 kg")]
    mapped = rules.map("555000111222333", answers)
    assert mapped.profile == {"city": "Jundiaí"}
    assert qa(mapped) == {"Cidade de entrega": "Campinas", "Quantos kg por dia": "300 kg"}
    assert mapped.form_name == "Orçamento moedores"
    # Another form keeps the global rules.
    assert rules.map("777", answers).profile == {"city": "Campinas", "volume": "300 kg"}


def test_the_shipped_file_loads_and_keeps_the_builtins() -> None:
    rules = load_form_field_map(DEFAULT_PATH)
    mapped = rules.map(
        None, [("full_name", "Joe Example"), ("email", "joe@example.com"), ("car_make", "Honda")]
    )
    assert mapped.profile == {"name": "Joe Example", "email": "joe@example.com"}
    assert qa(mapped) == {"Car make": "Honda"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[campos\nx = 1", "is not valid TOML"),
        ('[campos]\nqual_o_segmento = "segmentu"', "is not a destination"),
        ("[campos]\nqual_o_segmento = 3", "must be text"),
        ('[fields]\nx = "nome"', "unknown section"),
        ('[formularios."1"]\ncampo = "x"', "unknown key"),
        ('[rotulos]\nx = ""', "must be the question's text"),
    ],
)
def test_a_broken_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FormFieldsError) as info:
        load_form_field_map(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FormFieldsError, match="not found"):
        load_form_field_map(tmp_path / "nope.toml")


def test_field_key_ignores_case_accents_and_punctuation() -> None:
    assert (
        field_key("Qual é o seu Segmento?") == field_key("qual_e_o_seu_segmento") == "qual_e_o_seu_segmento"
    )
