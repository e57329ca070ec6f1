"""The catalog in a lead's message, in words the agent can read.

Meta's webhook examples (facebook/openapi business-messaging-api_v23.0.yaml, POST
/whatsapp/webhooks: "Order Message" and "Text Message with Context (Product Inquiry)")
carry a cart (`order.product_items[]`: product_retailer_id, quantity, item_price,
currency) or the product a question is about (`context.referred_product`). Without these
lines the agent would see an empty message where the lead placed an order, or a question
with no subject; pt-BR, like every other description of a lead's content.
"""

from __future__ import annotations

import math
from typing import Any

from channels.webhook_helpers import clean
from channels.whatsapp_cloud.schema import WOrder, WReferredProduct

# A cart line in the prompt is a label, not a place for a payload: ids are cut and
# long carts summarised.
_ID_MAX = 64
_ITEMS_SHOWN = 10


def _number(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
    return None


def _product_id(value: str | None) -> str:
    return (clean(value) or "?")[:_ID_MAX]


def order_text(order: WOrder | None) -> str:
    """ "[enviou um pedido do catálogo: 2x di9ozbzfi4 (30 USD cada); ...] <the lead's note>"."""
    items = (order.product_items if order else None) or []
    lines = []
    for item in items[:_ITEMS_SHOWN]:
        quantity = _number(item.quantity) or "?"
        price = _number(item.item_price)
        currency = (clean(item.currency) or "")[:8]
        each = f" ({price} {currency} cada)".replace("  ", " ") if price is not None else ""
        lines.append(f"{quantity}x {_product_id(item.product_retailer_id)}{each}")
    if len(items) > _ITEMS_SHOWN:
        lines.append(f"e mais {len(items) - _ITEMS_SHOWN} itens")
    label = "[enviou um pedido do catálogo" + (f": {'; '.join(lines)}]" if lines else "]")
    note = clean(order.text) if order else None
    return f"{label} {note}" if note else label


def product_question(text: str | None, product: WReferredProduct | None) -> str | None:
    """The lead's text, prefixed with the catalog product it was written about."""
    if product is None or clean(product.product_retailer_id) is None:
        return text
    label = f"[sobre o produto {_product_id(product.product_retailer_id)} do catálogo]"
    return f"{label} {text}" if text else label
