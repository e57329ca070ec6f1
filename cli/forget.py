"""`python main.py forget CONTACT`: the operator's LGPD erasure of one lead.

The operator types what they have (a phone in any formatting, a WhatsApp hidden id, an
Instagram id, a contact key copied from a log); this turns it into the contact key the
store erases, or says in pt-BR what to type instead.
"""

from __future__ import annotations

import sys

from core.models import contact_key_for
from store.base import Store

# What `forget --channel` accepts: the form each channel keys its leads by.
FORGET_CHANNELS = {
    "whatsapp": "whatsapp",
    "zapi": "whatsapp",
    "waha": "whatsapp",
    "whatsapp_cloud": "whatsapp",
    "instagram": "instagram",
    "cli": "cli",
}
_PHONE_CHARS = frozenset("0123456789+-(). ")


class ForgetInputError(ValueError):
    """What the operator typed names no contact; the message says what to type."""


def forget_contact_key(contact: str, channel: str) -> str:
    """The contact key of the lead an operator names: a phone (any formatting), a WhatsApp
    hidden id (`123@lid`), an Instagram id, a terminal contact, or a full contact key
    (`whatsapp:5511999999999`, `instagram:17841400000000000`) as logs and exports show it."""
    value = contact.strip()
    family = FORGET_CHANNELS.get(channel.strip().lower())
    if family is None:
        raise ForgetInputError(
            f"Canal desconhecido: {channel!r}. Use whatsapp (Z-API, WAHA ou Cloud API), instagram ou cli."
        )
    prefix, sep, rest = value.partition(":")
    if sep and prefix.lower() in FORGET_CHANNELS and rest.strip():
        family, value = FORGET_CHANNELS[prefix.lower()], rest.strip()
    if not value:
        raise ForgetInputError(
            "Informe o contato do lead: telefone com DDI e DDD, id @lid ou id do Instagram."
        )
    if family == "cli":
        return contact_key_for("cli", value)
    if family == "instagram":
        if not value.isdigit():
            raise ForgetInputError(
                "O id do Instagram é só números (o IGSID que aparece nos logs e no Chatwoot)."
            )
        return contact_key_for("instagram", value)
    if value.lower().endswith("@lid"):
        local = value[: -len("@lid")].strip()
        if not local.isdigit():
            raise ForgetInputError(
                "Um id @lid do WhatsApp é só números seguidos de @lid (ex.: 208573150634094@lid)."
            )
        return contact_key_for("whatsapp", f"{local}@lid")
    digits = "".join(ch for ch in value if ch.isdigit())
    if not set(value) <= _PHONE_CHARS or len(digits) < 8:
        raise ForgetInputError(
            "Informe o telefone do lead, com DDI e DDD (ex.: 5511999999999), ou o id @lid."
        )
    return contact_key_for("whatsapp", digits)


async def run_forget(store: Store, contact: str, channel: str) -> int:
    """Erase the lead `contact` names from `store` (opened and closed here); 0 erased, 1 no
    such lead, 2 the operator typed no usable contact."""
    try:
        contact_key = forget_contact_key(contact, channel)
    except ForgetInputError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    await store.open()
    try:
        erased = await store.forget_lead(contact_key)
    finally:
        await store.close()
    if not erased:
        print(f"Nenhum lead com esse contato ({contact_key.partition(':')[0]}).")
        return 1
    print(
        "Dados pessoais e mensagens do lead apagados; ficou só um registro anônimo da exclusão. "
        "Mensagens que ainda chegarem desse contato serão descartadas.\n"
        "Chatwoot, PipeRun e os webhooks de saída recebem a exclusão pela fila do bot assim que ele "
        "estiver rodando: python main.py outbox list --kind lead_erasure"
    )
    return 0
