"""System prompt and knowledge: grounded in the company, bounded, and never half-filled."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.prompts import (
    DEFAULT_PROMPTS_DIR,
    PromptBundle,
    PromptError,
    load_prompt_bundle,
    render_system_prompt,
)
from core.lead import LeadProfile, missing_fields
from core.paths import PROJECT_ROOT

NOW = datetime(2025, 3, 10, 13, 30, tzinfo=UTC)  # a Monday, 10:30 in Brasília
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")

# Every product line of ../shared/example-company.md, as a seller would name it.
EXAMPLE_PRODUCTS = [
    "FBM100",
    "FB300",
    "FB700",
    "SE SmartPro",
    "SE3000",
    "SE6000",
    "EPE1200",
    "CT200",
    "FS150",
    "Embutideira",
    "Misturadeira",
    "espetos",
]


@pytest.fixture(scope="module")
def bundle() -> PromptBundle:
    return load_prompt_bundle()


def render(bundle: PromptBundle, profile: LeadProfile) -> str:
    return render_system_prompt(bundle, profile=profile, missing=missing_fields(profile), now=NOW)


def test_default_bundle_is_the_example_company(bundle: PromptBundle) -> None:
    assert DEFAULT_PROMPTS_DIR == PROJECT_ROOT / "prompts"
    assert bundle.company_name == "Seleto Industrial"


@pytest.mark.parametrize("product", EXAMPLE_PRODUCTS)
def test_knowledge_mentions_every_product(bundle: PromptBundle, product: str) -> None:
    assert product.lower() in bundle.knowledge.lower()


def test_knowledge_carries_the_commercial_rules(bundle: PromptBundle) -> None:
    text = bundle.knowledge.lower()
    assert "indisponível" in text and "ct200" in text  # skewer line -> CT200
    assert "sugira a fb300" in text  # upsell from the FBM100
    assert "engenharia" in text  # complex questions go to engineers
    assert "aisi 304" in text


def test_rendered_prompt_has_products_known_and_missing_fields(bundle: PromptBundle) -> None:
    profile = LeadProfile(
        name="Marcos Pereira",
        city="Chapecó",
        state="SC",
        product_interest="FB300",
        volume="800 hambúrgueres/dia",
        volume_per_day=800,
        knows_company=True,
    )
    prompt = render(bundle, profile)
    for product in ("FBM100", "FB300", "SE3000", "CT200", "EPE1200"):
        assert product in prompt
    assert "Seleto Industrial" in prompt
    known = prompt.split("# O que já sabemos do lead")[1].split("# Dados que faltam")[0]
    assert "Nome: Marcos Pereira" in known
    assert "Cidade: Chapecó" in known
    assert "Estado (UF): SC" in known
    assert "800 hambúrgueres/dia" in known
    assert "Já conhece a empresa: sim" in known
    missing = prompt.split("# Dados que faltam (por prioridade)")[1]
    assert "Empresa" in missing
    assert "Urgência da compra" in missing
    assert "Papel na decisão de compra" in missing
    assert "Nome" not in missing
    assert missing.index("Empresa") < missing.index("Urgência da compra")
    assert "segunda-feira, 10/03/2025 10:30" in prompt


def test_no_unfilled_placeholder(bundle: PromptBundle) -> None:
    for profile in (LeadProfile(), LeadProfile(name="Ana", company="Boi Bom", urgency="imediata")):
        prompt = render(bundle, profile)
        assert not PLACEHOLDER.search(prompt), PLACEHOLDER.findall(prompt)


def test_empty_profile_says_so(bundle: PromptBundle) -> None:
    prompt = render(bundle, LeadProfile())
    assert "começo da conversa" in prompt


def test_complete_profile_says_nothing_is_missing(bundle: PromptBundle) -> None:
    prompt = render_system_prompt(bundle, profile=LeadProfile(name="Ana"), missing=[], now=NOW)
    assert "qualificação completa" in prompt


def test_lead_text_cannot_inject_placeholders_or_blow_up_the_prompt(bundle: PromptBundle) -> None:
    sneaky = LeadProfile(name="{knowledge}", company="x" * 190)
    prompt = render(bundle, sneaky)
    assert prompt.count("FBM100") == render(bundle, LeadProfile()).count("FBM100")
    assert "Nome: {knowledge}" in prompt
    assert "x" * 190 not in prompt


def test_phone_is_not_copied_into_the_prompt(bundle: PromptBundle) -> None:
    prompt = render(bundle, LeadProfile(phone="5511987654321"))
    assert "5511987654321" not in prompt
    assert "Telefone: informado" in prompt


def test_prompt_size_does_not_grow_with_the_lead(bundle: PromptBundle) -> None:
    empty = len(render(bundle, LeadProfile()))
    full = LeadProfile(
        **dict.fromkeys(
            ("name", "company", "city", "segment", "product_interest", "volume", "timeline", "budget_signal"),
            "y" * 200,
        )
    )
    assert len(render(bundle, full)) < empty + 2_000


def test_system_prompt_states_the_guardrails(bundle: PromptBundle) -> None:
    text = bundle.system_template.lower()
    for phrase in ("preço", "desconto", "prazo", "duas perguntas", "nunca pergunte de novo", "ignorar"):
        assert phrase in text


# --- a re-targeted or broken prompts folder -------------------------------------------


@pytest.fixture
def prompts_copy(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, target)
    return target


def test_retargeting_by_editing_files(prompts_copy: Path) -> None:
    (prompts_copy / "company.toml").write_text('name = "Padaria Pão Quente"\n', encoding="utf-8")
    for f in (prompts_copy / "knowledge").glob("*.md"):
        f.unlink()
    (prompts_copy / "knowledge" / "products.md").write_text(
        "# Produtos\n- Forno turbo {modelo X}: assa 40 pães.\n", encoding="utf-8"
    )
    (prompts_copy / "knowledge" / "zz_extra.md").write_text("Atendemos todo o RS.\n", encoding="utf-8")
    bundle = load_prompt_bundle(prompts_copy)
    prompt = render_system_prompt(bundle, profile=LeadProfile(), missing=["name"], now=NOW)
    assert "Padaria Pão Quente" in prompt
    assert "Forno turbo {modelo X}" in prompt  # braces in knowledge survive untouched
    assert prompt.index("Forno turbo") < prompt.index("Atendemos todo o RS")
    assert "Seleto" not in prompt
    assert "FBM100" not in prompt


def test_unknown_placeholder_fails_at_load(prompts_copy: Path) -> None:
    system = prompts_copy / "system.md"
    system.write_text(system.read_text(encoding="utf-8") + "\n{lead_nome}\n", encoding="utf-8")
    with pytest.raises(PromptError, match=r"\{lead_nome\}"):
        load_prompt_bundle(prompts_copy)


def test_missing_required_placeholder_fails_at_load(prompts_copy: Path) -> None:
    system = prompts_copy / "system.md"
    system.write_text(system.read_text(encoding="utf-8").replace("{knowledge}", ""), encoding="utf-8")
    with pytest.raises(PromptError, match=r"\{knowledge\}"):
        load_prompt_bundle(prompts_copy)


def test_company_name_is_required(prompts_copy: Path) -> None:
    (prompts_copy / "company.toml").write_text('timezone = "America/Sao_Paulo"\n', encoding="utf-8")
    with pytest.raises(PromptError, match="name"):
        load_prompt_bundle(prompts_copy)


def test_empty_knowledge_fails(prompts_copy: Path) -> None:
    for f in (prompts_copy / "knowledge").glob("*.md"):
        f.unlink()
    with pytest.raises(PromptError, match="knowledge"):
        load_prompt_bundle(prompts_copy)
