"""Z-API's webhook payloads as frozen models (channels/webhook_helpers.py: ProviderModel).

Shapes follow Z-API's published docs (developer.z-api.io, mirrored in the
github.com/Z-API/z-api-docs repo: docs/webhooks/on-message-received.md,
on-whatsapp-message-status-changes.md, on-message-send.md).
"""

from __future__ import annotations

from typing import Any

from channels.webhook_helpers import ProviderModel

# --- webhook payload models --------------------------------------------------------
# Z-API adds fields regularly; unknown keys are ignored so a new field never breaks us,
# while a known field with the wrong type is a 422 (the body is not what Z-API sends).


class ZText(ProviderModel):
    message: str | None = None
    # Present on link previews and on messages that come from an ad click.
    description: str | None = None
    title: str | None = None
    url: str | None = None


class ZAudio(ProviderModel):
    audioUrl: str | None = None
    mimeType: str | None = None
    ptt: bool | None = None
    seconds: float | None = None
    viewOnce: bool | None = None


class ZImage(ProviderModel):
    imageUrl: str | None = None
    thumbnailUrl: str | None = None
    caption: str | None = None
    mimeType: str | None = None
    viewOnce: bool | None = None


class ZDocument(ProviderModel):
    documentUrl: str | None = None
    fileName: str | None = None
    mimeType: str | None = None
    caption: str | None = None
    title: str | None = None
    # The docs' table says string, their example sends a number.
    pageCount: int | str | None = None


class ZVideo(ProviderModel):
    videoUrl: str | None = None
    caption: str | None = None
    mimeType: str | None = None


class ZSticker(ProviderModel):
    stickerUrl: str | None = None
    mimeType: str | None = None


class ZLocation(ProviderModel):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ZContact(ProviderModel):
    displayName: str | None = None
    vCard: str | None = None
    phones: list[str] | None = None


class ZButtonsResponse(ProviderModel):
    buttonId: str | None = None
    message: str | None = None


class ZListResponse(ProviderModel):
    # `title` is the chosen row's title, `message` its description (see send-option-list).
    message: str | None = None
    title: str | None = None
    selectedRowId: str | None = None


class ZReferencedMessage(ProviderModel):
    messageId: str | None = None
    fromMe: bool | None = None
    phone: str | None = None


class ZReaction(ProviderModel):
    value: str | None = None
    time: int | None = None
    reactionBy: str | None = None
    referencedMessage: ZReferencedMessage | None = None


class ZExternalAdReply(ProviderModel):
    """Click-to-WhatsApp ad context ("Exemplo de retorno de texto vindos de anúncio")."""

    title: str | None = None
    body: str | None = None
    sourceType: str | None = None
    sourceId: str | None = None
    sourceUrl: str | None = None
    thumbnailUrl: str | None = None
    # Not in Z-API's docs; kept in case their payload starts forwarding Meta's click id.
    ctwaClid: str | None = None


class ZPollOption(ProviderModel):
    name: str | None = None


class ZPollVote(ProviderModel):
    pollMessageId: str | None = None
    options: list[ZPollOption] | None = None


class ZButtonLabel(ProviderModel):
    displayText: str | None = None


class ZButton(ProviderModel):
    """One button of a buttonsMessage ("Exemplo de retorno de botão com imagem")."""

    buttonId: str | None = None
    buttonText: ZButtonLabel | None = None


class ZButtonsMessage(ProviderModel):
    message: str | None = None
    imageUrl: str | None = None
    videoUrl: str | None = None
    buttons: list[ZButton] | None = None


class ZHydratedButton(ProviderModel):
    """A template button: a link, a quick reply or a call, each with its label."""

    urlButton: ZButtonLabel | None = None
    quickReplyButton: ZButtonLabel | None = None
    callButton: ZButtonLabel | None = None


class ZHydratedTemplate(ProviderModel):
    """ "Exemplo de retorno de template de texto" (and of image, video, document,
    location templates, whose `header` holds the media)."""

    header: dict[str, Any] | None = None
    message: str | None = None
    footer: str | None = None
    title: str | None = None
    templateId: str | None = None
    hydratedButtons: list[ZHydratedButton] | None = None


class ZCarouselCard(ProviderModel):
    message: str | None = None
    title: str | None = None
    footer: str | None = None
    hydratedButtons: list[ZHydratedButton] | None = None


class ZCarouselMessage(ProviderModel):
    text: str | None = None
    cards: list[ZCarouselCard] | None = None


class ZListRow(ProviderModel):
    # Z-API's own option list names a row id/title/description (send-option-list);
    # WhatsApp's protobuf names it rowId/title/description.
    id: str | None = None
    rowId: str | None = None
    title: str | None = None
    description: str | None = None


class ZListSection(ProviderModel):
    title: str | None = None
    rows: list[ZListRow] | None = None


class ZListMessage(ProviderModel):
    """Not in Z-API's received-message examples: read leniently, in the shape of the
    option list Z-API sends (docs/message/send-option-list.md) and of WhatsApp's
    ListMessage, so the rows the lead was shown are kept."""

    title: str | None = None
    description: str | None = None
    message: str | None = None
    buttonText: str | None = None
    buttonLabel: str | None = None
    footerText: str | None = None
    options: list[ZListRow] | None = None
    sections: list[ZListSection] | None = None


class ZProduct(ProviderModel):
    """ "Exemplo de retorno de produto"."""

    title: str | None = None
    description: str | None = None
    price: float | None = None
    currencyCode: str | None = None
    productId: str | None = None
    url: str | None = None


class ZOrderItem(ProviderModel):
    name: str | None = None
    quantity: float | None = None
    price: float | None = None
    # reviewAndPay / reviewOrder name the unit price `value`.
    value: float | None = None
    productId: str | None = None


class ZOrder(ProviderModel):
    """ "Exemplo de retorno de carrinho" (`order`) and the order request/update
    (`reviewAndPay`, `reviewOrder`)."""

    orderTitle: str | None = None
    message: str | None = None
    itemCount: float | None = None
    currency: str | None = None
    total: float | None = None
    referenceId: str | None = None
    orderStatus: str | None = None
    products: list[ZOrderItem] | None = None


class ZPoll(ProviderModel):
    question: str | None = None
    options: list[ZPollOption] | None = None


class ZStatusCallback(ProviderModel):
    """docs/webhooks/on-whatsapp-message-status-changes.md: one status for a list of
    our messages (`ids`)."""

    type: str
    status: str | None = None
    ids: list[Any] | None = None
    # The docs' table names a single `id`; their examples send `ids`.
    id: str | None = None
    momment: float | None = None
    phone: str | None = None
    isGroup: bool | None = None


class ZPresenceCallback(ProviderModel):
    """docs/webhooks/on-chat-presence.md: what the lead is doing in our chat (COMPOSING,
    RECORDING, PAUSED after either, AVAILABLE in the chat, UNAVAILABLE gone)."""

    type: str
    phone: str | None = None
    status: str | None = None
    lastSeen: float | None = None
    instanceId: str | None = None


class ZReceivedCallback(ProviderModel):
    type: str
    messageId: str | None = None
    phone: str | None = None
    connectedPhone: str | None = None
    instanceId: str | None = None
    isGroup: bool | None = None
    isNewsletter: bool | None = None
    broadcast: bool | None = None
    fromMe: bool | None = None
    fromApi: bool | None = None
    waitingMessage: bool | None = None
    isStatusReply: bool | None = None
    isEdit: bool | None = None
    # Z-API spells it "momment" (ms epoch); one doc example says "moment", other
    # integrations forward "timestamp" (seconds).
    momment: float | None = None
    moment: float | None = None
    timestamp: float | None = None
    status: str | None = None
    senderName: str | None = None
    chatName: str | None = None
    participantPhone: str | None = None
    referenceMessageId: str | None = None
    notification: str | None = None

    text: ZText | None = None
    audio: ZAudio | None = None
    image: ZImage | None = None
    document: ZDocument | None = None
    video: ZVideo | None = None
    sticker: ZSticker | None = None
    location: ZLocation | None = None
    contact: ZContact | None = None
    buttonsResponseMessage: ZButtonsResponse | None = None
    listResponseMessage: ZListResponse | None = None
    reaction: ZReaction | None = None
    pollVote: ZPollVote | None = None
    poll: ZPoll | None = None
    hydratedTemplate: ZHydratedTemplate | None = None
    buttonsMessage: ZButtonsMessage | None = None
    listMessage: ZListMessage | None = None
    carouselMessage: ZCarouselMessage | None = None
    product: ZProduct | None = None
    order: ZOrder | None = None
    reviewAndPay: ZOrder | None = None
    reviewOrder: ZOrder | None = None
    externalAdReply: ZExternalAdReply | None = None

    def has_content(self) -> bool:
        return any(
            block is not None
            for block in (
                self.text,
                self.audio,
                self.image,
                self.document,
                self.video,
                self.sticker,
                self.location,
                self.contact,
                self.buttonsResponseMessage,
                self.listResponseMessage,
                self.reaction,
                self.pollVote,
                self.poll,
                self.hydratedTemplate,
                self.buttonsMessage,
                self.listMessage,
                self.carouselMessage,
                self.product,
                self.order,
                self.reviewAndPay,
                self.reviewOrder,
            )
        )
