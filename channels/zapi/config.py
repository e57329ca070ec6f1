"""What the Z-API adapter reads, and nothing else.

The adapter used to hold the whole Settings; a config this small says at a glance which
values reach Z-API (the instance token rides in the URL, so the list matters) and lets
a test build the adapter without the other ninety fields. web/configs/channels.py maps
Settings onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from channels.media_fetch import MediaConfig


@dataclass(frozen=True, slots=True)
class ZapiConfig:
    base_url: str
    instance_id: str | None
    instance_token: SecretStr | None
    client_token: SecretStr | None
    webhook_secret: SecretStr | None
    rate_per_s: float
    http_timeout_s: float
    media: MediaConfig

    @property
    def configured(self) -> bool:
        """Both halves of the instance URL; the Client-Token is optional per account."""
        return bool(self.instance_id and self.instance_token)
