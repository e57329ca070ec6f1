"""Z-API's interactive messages as the words the lead saw or chose.

Templates, buttons, lists, carousels, polls, products and orders (docs/webhooks/
on-message-received.md) carry no `text` block: without this the agent would get
"[mensagem sem texto]" for a product the lead asked about or an order they placed. Each
becomes one text, labelled in pt-BR like the other non-text kinds the model reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from channels.webhook_helpers import clean
from channels.zapi.schema import (
    ZButtonsMessage,
    ZCarouselMessage,
    ZHydratedButton,
    ZHydratedTemplate,
    ZListMessage,
    ZOrder,
    ZPoll,
    ZProduct,
    ZReceivedCallback,
)
from core.models import MessageKind


def _lines(parts: Iterable[str | None]) -> str | None:
    kept = [p for p in (clean(part) for part in parts) if p]
    return "\n".join(kept) or None


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _button_labels(buttons: Iterable[ZHydratedButton]) -> list[str]:
    labels = []
    for button in buttons:
        for action in (button.quickReplyButton, button.urlButton, button.callButton):
            label = clean(action.displayText) if action else None
            if label:
                labels.append(label)
    return labels


def _choices(label: str, options: list[str]) -> str | None:
    return f"{label}: " + " | ".join(options) if options else None


def _template(template: ZHydratedTemplate) -> str | None:
    buttons = _button_labels(template.hydratedButtons or [])
    return _lines([template.title, template.message, template.footer, _choices("Botões", buttons)])


def _buttons(message: ZButtonsMessage) -> str | None:
    labels = [
        label
        for b in (message.buttons or [])
        if (label := clean(b.buttonText.displayText if b.buttonText else None))
    ]
    return _lines([message.message, _choices("Botões", labels)])


def _list(message: ZListMessage) -> str | None:
    rows = list(message.options or [])
    for section in message.sections or []:
        rows.extend(section.rows or [])
    options = [
        " - ".join(p for p in (clean(r.title), clean(r.description)) if p)
        for r in rows
        if clean(r.title) or clean(r.description)
    ]
    return _lines(
        [
            message.title,
            message.description or message.message,
            message.footerText,
            _choices("Opções", options),
        ]
    )


def _carousel(message: ZCarouselMessage) -> str | None:
    cards = [
        _lines(
            [
                card.title,
                card.message,
                card.footer,
                _choices("Botões", _button_labels(card.hydratedButtons or [])),
            ]
        )
        for card in message.cards or []
    ]
    return _lines([message.text, *cards])


def _poll(poll: ZPoll) -> str | None:
    options = [name for o in (poll.options or []) if (name := clean(o.name))]
    return _lines([f"Enquete: {clean(poll.question) or ''}".rstrip(": "), _choices("Opções", options)])


def _product(product: ZProduct) -> str | None:
    price = " ".join(p for p in (clean(product.currencyCode), _number(product.price)) if p)
    details = [p for p in (clean(product.title), clean(product.description), price) if p]
    return "Produto: " + " - ".join(details) if details else "Produto do catálogo"


def _order(order: ZOrder) -> str:
    items = []
    for item in order.products or []:
        name = clean(item.name) or clean(item.productId)
        if name:
            quantity = _number(item.quantity)
            items.append(f"{quantity}x {name}" if quantity else name)
    total = " ".join(p for p in (clean(order.currency), _number(order.total)) if p)
    title = clean(order.orderTitle) or clean(order.referenceId)
    head = "Pedido" + (f" {title}" if title else "")
    parts = [
        head + (f" ({clean(order.orderStatus)})" if clean(order.orderStatus) else ""),
        ", ".join(items) or None,
        f"total {total}" if _number(order.total) else None,
    ]
    text = ": ".join(p for p in parts[:2] if p)
    text = " - ".join(p for p in (text, parts[2]) if p)
    message = clean(order.message)
    return f"{text}\n{message}" if message else text


def interactive_fields(event: ZReceivedCallback) -> dict[str, Any] | None:
    """The text of the one interactive block Z-API sent, if it sent one."""
    text: str | None
    if event.hydratedTemplate is not None:
        text = _template(event.hydratedTemplate)
    elif event.buttonsMessage is not None:
        text = _buttons(event.buttonsMessage)
    elif event.listMessage is not None:
        text = _list(event.listMessage)
    elif event.carouselMessage is not None:
        text = _carousel(event.carouselMessage)
    elif event.poll is not None:
        text = _poll(event.poll)
    elif event.product is not None:
        text = _product(event.product)
    elif (order := event.order or event.reviewAndPay or event.reviewOrder) is not None:
        text = _order(order)
    else:
        return None
    return {"kind": MessageKind.OTHER, "text": text}
