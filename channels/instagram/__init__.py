"""Instagram Direct channel: `schema` (frozen payload models), `parse` (webhooks to
messages, read receipts and ad referrals), `errors` (what Meta's codes mean), `text`
(long texts cut to the Send API's limit), `media` (a seller's file as an attachment URL)
and `channel` (signature, sending text and files with typing and the HUMAN_AGENT tag,
profile names, media, the doctor's probe), built from `config`.

`channels.instagram.InstagramChannel` stays the import path the registry, tests and
runtime use.
"""

from channels.errors import MediaTooLarge
from channels.instagram.channel import TYPING_MAX_S, InstagramChannel
from channels.instagram.config import InstagramConfig
from channels.instagram.errors import WINDOW_SUBCODES
from channels.instagram.parse import STORY_REPLY_LABEL
from channels.instagram.schema import IGWebhook
from channels.meta_common import MetaApiError, OutsideWindow

__all__ = [
    "STORY_REPLY_LABEL",
    "TYPING_MAX_S",
    "WINDOW_SUBCODES",
    "IGWebhook",
    "InstagramChannel",
    "InstagramConfig",
    "MediaTooLarge",
    "MetaApiError",
    "OutsideWindow",
]
