"""Z-API channel: `schema` (frozen payload models), `parse` (webhook to messages and
delivery statuses), `content` and `interactive` (what a message says), `media` (the
request that sends a file) and `channel` (authentication, sending, media, the doctor's
probe), built from `config`.

`channels.zapi.ZapiChannel` stays the import path the registry, tests and runtime use.
"""

from channels.errors import MediaTooLarge
from channels.zapi.channel import DELAY_MAX_S, DELAY_MIN_S, ZapiChannel
from channels.zapi.config import ZapiConfig
from channels.zapi.schema import ZReceivedCallback

__all__ = ["DELAY_MAX_S", "DELAY_MIN_S", "MediaTooLarge", "ZReceivedCallback", "ZapiChannel", "ZapiConfig"]
