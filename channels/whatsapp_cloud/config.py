"""What the WhatsApp Cloud API adapter reads, and nothing else.

The bearer token and the app secret are the two values that must never leave this
adapter's requests; a config this small shows where they go, and a test builds the
adapter without the whole Settings. web/configs/channels.py maps Settings onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from channels.media_fetch import MediaConfig


@dataclass(frozen=True, slots=True)
class WhatsAppCloudConfig:
    phone_number_id: str | None
    access_token: SecretStr | None
    template_language: str
    graph_url: str
    graph_version: str
    # One Meta app signs WhatsApp and Instagram webhooks; each adapter checks it itself.
    app_secret: SecretStr | None
    rate_per_s: float
    http_timeout_s: float
    media: MediaConfig

    @property
    def configured(self) -> bool:
        return bool(self.phone_number_id and self.access_token)
