"""Z-API webhooks exactly as the published docs show them: every example of
docs/webhooks/on-message-received.md is acknowledged, message statuses become delivery
statuses, notifications without a messageId are ignored (not 422), and interactive
messages keep the words the lead saw or chose."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.zapi import ZapiChannel
from core.errors import WebhookRejected
from core.models import MessageKind
from core.settings import Settings
from web.configs.channels import zapi_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zapi"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


EXAMPLES: dict[str, dict[str, Any]] = load("received_examples.json")["examples"]
STATUSES: list[dict[str, Any]] = load("message_status_examples.json")["examples"]


@pytest.fixture
def channel() -> ZapiChannel:
    values: dict[str, Any] = {
        "_env_file": None,
        "zapi_instance_id": "3C0FFEE1234INSTANCE",
        "zapi_instance_token": "t",
    }
    settings = Settings(**values)
    return ZapiChannel(zapi_config(settings))


def example(title: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[title])


# --- every documented example ------------------------------------------------------------


def test_the_fixture_holds_every_documented_example() -> None:
    assert len(EXAMPLES) >= 50


@pytest.mark.parametrize("title", sorted(EXAMPLES))
def test_every_documented_received_example_is_acknowledged(channel: ZapiChannel, title: str) -> None:
    result = channel.parse(example(title))
    assert len(result.messages) + len(result.ignored) == 1
    assert result.statuses == []


# --- MessageStatusCallback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [("SENT", "sent"), ("RECEIVED", "delivered"), ("READ", "read"), ("PLAYED", "played")],
)
def test_message_status_becomes_a_delivery_status(channel: ZapiChannel, status: str, expected: str) -> None:
    [payload] = [p for p in STATUSES if p["status"] == status]
    result = channel.parse(payload)
    assert result.messages == [] and result.ignored == []
    [delivery] = result.statuses
    assert delivery.provider_message_id == "999999999999999999999"
    assert delivery.status == expected
    assert delivery.timestamp == datetime.fromtimestamp(1632234645, tz=UTC)
    assert delivery.error is None


def test_read_by_me_is_the_business_reading_and_is_ignored(channel: ZapiChannel) -> None:
    [payload] = [p for p in STATUSES if p["status"] == "READ_BY_ME"]
    result = channel.parse(payload)
    assert result.statuses == []
    assert [(e.reason, e.provider_message_id) for e in result.ignored] == [
        ("read_by_me", "999999999999999999999")
    ]


def test_one_status_for_several_ids_is_one_delivery_status_each(channel: ZapiChannel) -> None:
    payload = copy.deepcopy(STATUSES[2]) | {"ids": ["A1", "A2", "", 7]}
    assert [(s.provider_message_id, s.status) for s in channel.parse(payload).statuses] == [
        ("A1", "read"),
        ("A2", "read"),
    ]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"status": "PENDING"}, "status_unknown"), ({"isGroup": True}, "group"), ({"ids": []}, "status")],
)
def test_statuses_that_are_not_about_our_messages(
    channel: ZapiChannel, changes: dict[str, Any], reason: str
) -> None:
    result = channel.parse(copy.deepcopy(STATUSES[0]) | changes)
    assert result.statuses == []
    assert {e.reason for e in result.ignored} == {reason}


@pytest.mark.parametrize("changes", [{"ids": "999"}, {"status": ["READ"]}, {"momment": "ontem"}])
def test_a_malformed_status_callback_is_a_422(channel: ZapiChannel, changes: dict[str, Any]) -> None:
    with pytest.raises(WebhookRejected) as refused:
        channel.parse(copy.deepcopy(STATUSES[0]) | changes)
    assert refused.value.status == 422


# --- notifications without messageId -----------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        "Exemplo de retorno de alteração do Nome do Whatsapp conectado",
        "Exemplo de retorno de alteração da foto do Whatsapp conectado",
        "Exemplo de retorno de alteração de etiquetas de um chat",
    ],
)
def test_notifications_without_message_id_are_ignored(channel: ZapiChannel, title: str) -> None:
    payload = example(title)
    assert "messageId" not in payload
    result = channel.parse(payload)
    assert result.messages == [] and result.statuses == []
    assert [(e.reason, e.provider_message_id, e.message) for e in result.ignored] == [
        ("notification", None, None)
    ]


@pytest.mark.parametrize(
    "title",
    [
        "Exemplo de retorno de ligação recebida",
        "Exemplo de retorno de ligação perdida",
        "Exemplo de retorno de pedido de pagamento",
    ],
)
def test_notifications_with_message_id_are_ignored_with_it(channel: ZapiChannel, title: str) -> None:
    payload = example(title)
    [event] = channel.parse(payload).ignored
    assert (event.reason, event.provider_message_id) == ("notification", payload["messageId"])


def test_a_received_callback_without_message_id_or_notification_is_still_a_422(channel: ZapiChannel) -> None:
    payload = example("Exemplo de retorno de texto")
    del payload["messageId"]
    with pytest.raises(WebhookRejected) as refused:
        channel.parse(payload)
    assert refused.value.status == 422


def test_a_notification_of_the_wrong_type_is_a_422(channel: ZapiChannel) -> None:
    payload = example("Exemplo de retorno de alteração do Nome do Whatsapp conectado") | {"notification": 5}
    with pytest.raises(WebhookRejected) as refused:
        channel.parse(payload)
    assert refused.value.status == 422


# --- interactive messages keep their words -----------------------------------------------


@pytest.mark.parametrize(
    ("title", "text"),
    [
        (
            "Exemplo de retorno de template de texto",
            "título da mensagem\ntexto da mensagem\nrodapé da mensagem",
        ),
        ("Exemplo de retorno de template de botão OTP", "texto da mensagem\nBotões: Copiar código"),
        (
            "Exemplo de retorno de template de imagem",
            "título da mensagem\ntexto da mensagem\nrodapé da mensagem",
        ),
        (
            "Exemplo de retorno de botão com imagem",
            "Texto da mensagem\nBotões: Texto do botão 1 | Texto do botão 2",
        ),
        (
            "Exemplo de retorno de botão com video",
            "Texto da mensagem\nBotões: Texto do botão 1 | Texto do botão 2",
        ),
        ("Exemplo de retorno de produto", "Produto: name - BRL 1"),
        ("Exemplo de retorno de carrinho", "Pedido name: 1x nameProduct - total BRL 2000"),
        (
            "Exemplo de retorno de envio de pedido",
            "Pedido 4N9AVI38VOB (pending): 2x order 1, 2x order 2 - total BRL 605",
        ),
        (
            "Exemplo de retorno de atualização de pedido",
            "Pedido 4N9AVI38VOB (processing): 2x order 1, 2x order 2 - total BRL 605",
        ),
        (
            "Exemplo de retorno de enquete",
            "Enquete: Qual a melhor API de WhatsApp?\nOpções: Z-API | Outras",
        ),
    ],
)
def test_interactive_messages_keep_what_the_lead_saw(channel: ZapiChannel, title: str, text: str) -> None:
    [message] = channel.parse(example(title)).messages
    assert message.kind is MessageKind.OTHER
    assert message.text == text


def test_a_carousel_keeps_every_card(channel: ZapiChannel) -> None:
    # The docs' carousel example is one the business sent (fromMe): kept for bookkeeping.
    [event] = channel.parse(example("Exemplo de retorno de carrosel")).ignored
    assert event.reason == "from_me" and event.message is not None
    assert event.message.text is not None
    assert event.message.text.startswith("Texto da mensagem\nMensagem do cartão do carrosel")
    assert event.message.text.count("Mensagem do cartão do carrosel") == 2


def test_the_chosen_button_and_list_row_are_the_text(channel: ZapiChannel) -> None:
    [button] = channel.parse(example("Exemplo de retorno de texto (Lista de Botão)")).messages
    [row] = channel.parse(example("Exemplo de retorno de texto (Lista de Opcão)")).messages
    assert (button.kind, button.text) == (MessageKind.BUTTON_REPLY, "Ótimo")
    assert (row.kind, row.text) == (MessageKind.LIST_REPLY, "Z-API")


def test_a_list_message_keeps_its_rows(channel: ZapiChannel) -> None:
    # Not in the received examples: shaped like Z-API's own option list (send-option-list).
    payload = example("Exemplo de retorno de texto") | {
        "text": None,
        "listMessage": {
            "title": "Planos",
            "description": "Escolha um plano",
            "buttonLabel": "Abrir lista",
            "options": [
                {"id": "1", "title": "Mensal", "description": "R$ 99"},
                {"id": "2", "title": "Anual"},
            ],
        },
    }
    [message] = channel.parse(payload).messages
    assert message.kind is MessageKind.OTHER
    assert message.text == "Planos\nEscolha um plano\nOpções: Mensal - R$ 99 | Anual"


@pytest.mark.parametrize(
    "block",
    [
        {"buttonsMessage": {"buttons": "yes"}},
        {"product": {"price": "caro"}},
        {"order": {"products": [{"quantity": "muitos"}]}},
        {"hydratedTemplate": {"hydratedButtons": [{"urlButton": "x"}]}},
    ],
)
def test_malformed_interactive_blocks_are_a_422(channel: ZapiChannel, block: dict[str, Any]) -> None:
    payload = example("Exemplo de retorno de texto") | block
    with pytest.raises(WebhookRejected) as refused:
        channel.parse(payload)
    assert refused.value.status == 422


def test_empty_interactive_blocks_still_make_one_message(channel: ZapiChannel) -> None:
    for block in ({"product": {}}, {"order": {}}, {"poll": {}}, {"buttonsMessage": {}}):
        payload = example("Exemplo de retorno de texto") | {"text": None} | block
        [message] = channel.parse(payload).messages
        assert message.kind is MessageKind.OTHER


# --- at the route --------------------------------------------------------------------


async def test_the_route_acknowledges_notifications_and_statuses_and_refuses_junk(bot: Any) -> None:
    profile = example("Exemplo de retorno de alteração do Nome do Whatsapp conectado")
    response = await bot.post("/webhooks/zapi", json=profile)
    assert response.status == 200
    assert (await response.json())["ignored"] == 1

    response = await bot.post("/webhooks/zapi", json=STATUSES[2])
    assert response.status == 200
    assert (await response.json())["statuses"] == 1

    junk = example("Exemplo de retorno de texto")
    del junk["messageId"]
    response = await bot.post("/webhooks/zapi", json=junk)
    assert response.status == 422
