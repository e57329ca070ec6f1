"""WhatsApp Cloud API webhook payloads as frozen models (channels/webhook_helpers.py).

Shapes follow Meta's references (developers.facebook.com/documentation/business-messaging/
whatsapp/webhooks/reference/messages/..., smb_message_echoes, status and errors).
Unknown keys are ignored (Meta adds fields often); known keys with the wrong type are a 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from channels.webhook_helpers import ProviderModel

# --- webhook payload models --------------------------------------------------------


class WText(ProviderModel):
    body: str | None = None


class WMedia(ProviderModel):
    """audio / image / video / document / sticker share this shape."""

    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool | None = None
    animated: bool | None = None
    # Newer payloads add a direct URL; it still needs the token, so the id is what we use.
    url: str | None = None


class WLocation(ProviderModel):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class WSharedName(ProviderModel):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class WSharedPhone(ProviderModel):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class WSharedContact(ProviderModel):
    name: WSharedName | None = None
    phones: list[WSharedPhone] | None = None


class WButton(ProviderModel):
    """A quick-reply button of a template message."""

    text: str | None = None
    payload: str | None = None


class WReply(ProviderModel):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class WInteractive(ProviderModel):
    type: str | None = None
    button_reply: WReply | None = None
    list_reply: WReply | None = None


class WReaction(ProviderModel):
    message_id: str | None = None
    emoji: str | None = None


class WReferredProduct(ProviderModel):
    catalog_id: str | None = None
    product_retailer_id: str | None = None


class WContext(ProviderModel):
    id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    # The lead wrote from a product's page in the catalog ("Message Business").
    referred_product: WReferredProduct | None = None


class WOrderItem(ProviderModel):
    product_retailer_id: str | None = None
    # Numbers in Meta's examples; typed loosely and read by hand (channels.whatsapp_cloud.commerce).
    quantity: Any = None
    item_price: Any = None
    currency: str | None = None


class WOrder(ProviderModel):
    """A cart the lead sent from the catalog (type "order")."""

    catalog_id: str | None = None
    text: str | None = None
    product_items: list[WOrderItem] | None = None


class WReferral(ProviderModel):
    """Click-to-WhatsApp ad context; only on the first message after the click."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


class WErrorData(ProviderModel):
    details: str | None = None


class WError(ProviderModel):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    error_data: WErrorData | None = None


class WMessage(ProviderModel):
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    id: str | None = None
    # Unix seconds as a string; typed loosely and checked by hand (see _epoch).
    timestamp: Any = None
    type: str | None = None
    group_id: str | None = None
    context: WContext | None = None
    referral: WReferral | None = None
    errors: list[WError] | None = None

    text: WText | None = None
    audio: WMedia | None = None
    voice: WMedia | None = None
    image: WMedia | None = None
    video: WMedia | None = None
    document: WMedia | None = None
    sticker: WMedia | None = None
    location: WLocation | None = None
    contacts: list[WSharedContact] | None = None
    button: WButton | None = None
    interactive: WInteractive | None = None
    reaction: WReaction | None = None
    order: WOrder | None = None


class WEcho(WMessage):
    """A message the business sent from the WhatsApp Business app (coexistence)."""

    to: str | None = None
    to_user_id: str | None = None


class WProfile(ProviderModel):
    name: str | None = None
    username: str | None = None


class WContact(ProviderModel):
    profile: WProfile | None = None
    wa_id: str | None = None
    user_id: str | None = None


class WStatus(ProviderModel):
    id: str | None = None
    status: str | None = None
    timestamp: Any = None
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    errors: list[WError] | None = None


class WMetadata(ProviderModel):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class WValue(ProviderModel):
    messaging_product: str | None = None
    metadata: WMetadata | None = None
    contacts: list[WContact] | None = None
    messages: list[WMessage] | None = None
    statuses: list[WStatus] | None = None
    errors: list[WError] | None = None
    message_echoes: list[WEcho] | None = None


# Content blocks in the order used when `type` is missing (one Meta doc example omits it).
