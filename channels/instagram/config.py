"""What the Instagram adapter reads, and nothing else.

The page token is what must stay out of URLs and logs; a config this small shows where
it goes, and a test builds the adapter without the whole Settings.
web/configs/channels.py maps Settings onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from channels.media_fetch import MediaConfig


@dataclass(frozen=True, slots=True)
class InstagramConfig:
    account_id: str | None
    access_token: SecretStr | None
    graph_url: str
    graph_version: str
    # One Meta app signs WhatsApp and Instagram webhooks; each adapter checks it itself.
    app_secret: SecretStr | None
    rate_per_s: float
    http_timeout_s: float
    media: MediaConfig

    @property
    def configured(self) -> bool:
        return bool(self.account_id and self.access_token)
