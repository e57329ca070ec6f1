"""What the WAHA adapter reads, and nothing else.

Small on purpose: which secrets reach the WAHA server (API key, HMAC key, URL secret) is
visible in one place, and a test builds the adapter without the whole Settings.
web/configs/channels.py maps Settings onto it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from channels.media_fetch import MediaConfig


@dataclass(frozen=True, slots=True)
class WahaConfig:
    url: str | None
    api_key: SecretStr | None
    session: str
    webhook_hmac_key: SecretStr | None
    webhook_secret: SecretStr | None
    rate_per_s: float
    http_timeout_s: float
    media: MediaConfig
    # Subscribe to each lead's chat presence (WAHA sends presence.update only then).
    presence_subscribe: bool = True

    @property
    def configured(self) -> bool:
        """A self-hosted WAHA may run without an API key; only its address is required."""
        return bool(self.url)
