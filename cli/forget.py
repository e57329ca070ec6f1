"""`python main.py forget CONTACT`: the operator's LGPD erasure of one lead.

The operator types what they have (a phone in any formatting, a WhatsApp hidden id, an
Instagram id, a contact key copied from a log); this turns it into the contact key the
store erases, or says (in English, like the rest of the CLI) what to type instead.
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
            f"unknown channel {channel!r}: use whatsapp (Z-API, WAHA or Cloud API), instagram or cli"
        )
    prefix, sep, rest = value.partition(":")
    if sep and prefix.lower() in FORGET_CHANNELS and rest.strip():
        family, value = FORGET_CHANNELS[prefix.lower()], rest.strip()
    if not value:
        raise ForgetInputError(
            "name the lead's contact: a phone with country and area code, a 123@lid id or an Instagram id"
        )
    if family == "cli":
        return contact_key_for("cli", value)
    if family == "instagram":
        if not value.isdigit():
            raise ForgetInputError(
                "an Instagram id is digits only (the IGSID shown in the logs and in Chatwoot)"
            )
        return contact_key_for("instagram", value)
    if value.lower().endswith("@lid"):
        local = value[: -len("@lid")].strip()
        if not local.isdigit():
            raise ForgetInputError("a WhatsApp @lid id is digits followed by @lid (e.g. 208573150634094@lid)")
        return contact_key_for("whatsapp", f"{local}@lid")
    digits = "".join(ch for ch in value if ch.isdigit())
    if not set(value) <= _PHONE_CHARS or len(digits) < 8:
        raise ForgetInputError(
            "type the lead's phone with country and area code (e.g. 5511999999999), or its @lid id"
        )
    return contact_key_for("whatsapp", digits)


async def run_forget(store: Store, contact: str, channel: str) -> int:
    """Erase the lead `contact` names from `store` (opened and closed here); 0 erased, 1 no
    such lead, 2 the operator typed no usable contact."""
    try:
        contact_key = forget_contact_key(contact, channel)
    except ForgetInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    await store.open()
    try:
        erased = await store.forget_lead(contact_key)
    finally:
        await store.close()
    if not erased:
        print(
            f"error: no {contact_key.partition(':')[0]} lead with that contact, nothing erased. "
            "Check the number (country and area code) or try the contact's @lid id.",
            file=sys.stderr,
        )
        return 1
    print(
        "The lead's personal data and messages are erased; only an anonymous record of the "
        "erasure remains. Messages that still arrive from this contact are dropped.\n"
        "Chatwoot, PipeRun and the outgoing webhooks get the erasure through the bot's queue once "
        "it is running: python main.py outbox list --kind lead_erasure"
    )
    return 0
