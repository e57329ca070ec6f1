"""WhatsApp Cloud API channel: `schema` (frozen payload models), `parse` (webhooks to
messages and statuses), `errors` (what Graph error codes mean), `messages` (request
bodies: template parameters, media by id, the upload form), `media` (where a media
download may take the token) and `channel` (signature, sending text, templates and
files, read receipts, media, the doctor's probe), built from `config`.

`channels.whatsapp_cloud.WhatsAppCloudChannel` stays the import path the registry, tests
and runtime use.
"""

from channels.errors import MediaTooLarge
from channels.meta_common import MetaApiError, OutsideWindow
from channels.whatsapp_cloud.channel import TEXT_MAX_CHARS, WhatsAppCloudChannel
from channels.whatsapp_cloud.config import WhatsAppCloudConfig
from channels.whatsapp_cloud.errors import AUTH_CODES, INVALID_RECIPIENT_CODES, RETRYABLE_CODES
from channels.whatsapp_cloud.parse import MEDIA_SCHEME, OBJECT, WINDOW_CODE

__all__ = [
    "AUTH_CODES",
    "INVALID_RECIPIENT_CODES",
    "MEDIA_SCHEME",
    "OBJECT",
    "RETRYABLE_CODES",
    "TEXT_MAX_CHARS",
    "WINDOW_CODE",
    "MediaTooLarge",
    "MetaApiError",
    "OutsideWindow",
    "WhatsAppCloudChannel",
    "WhatsAppCloudConfig",
]
