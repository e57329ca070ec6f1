"""What every integration client's error has in common.

Each client raises typed leaves of core's tree (`ProviderUnavailable`, `ProviderRejected`,
`AuthFailed`) under its own base class, so a caller can catch "anything Chatwoot" or
"anything worth retrying" without reading a flag. Until the runtime switches on the
types, the legacy `retryable` / `auth_failed` flags stay readable: derived from the type,
so they can never disagree with it.
"""

from __future__ import annotations

from core.errors import AuthFailed, ProviderError, Retryable


class IntegrationError(ProviderError):
    """Base of one integration client's errors; raise one of its leaves."""

    @property
    def retryable(self) -> bool:
        return isinstance(self, Retryable)

    @property
    def auth_failed(self) -> bool:
        return isinstance(self, AuthFailed)


__all__ = ["IntegrationError"]
