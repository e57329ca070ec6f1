"""WAHA channel: `schema` (frozen payload models), `parse` and `content` (webhook events
to messages, statuses and session states), `media` (the request that sends a file) and
`channel` (authentication, sending, media, the doctor's probe), built from `config`.

`channels.waha.WahaChannel` stays the import path the registry, tests and runtime use.
"""

from channels.errors import MediaTooLarge
from channels.waha.channel import HMAC_ALGORITHM_HEADER, HMAC_HEADER, WahaChannel
from channels.waha.config import WahaConfig
from channels.waha.schema import WMessage

__all__ = ["HMAC_ALGORITHM_HEADER", "HMAC_HEADER", "MediaTooLarge", "WMessage", "WahaChannel", "WahaConfig"]
