"""What every integration client's error has in common.

Each client raises typed leaves of core's tree (`ProviderUnavailable`, `ProviderRejected`,
`AuthFailed`) under its own base class, so a caller can catch "anything Chatwoot" or
"anything worth retrying" without reading a flag (`retryable` and `auth_failed`, for
logs, are read from the type by `ProviderError`).
"""

from __future__ import annotations

from core.errors import ProviderError


class IntegrationError(ProviderError):
    """Base of one integration client's errors; raise one of its leaves."""


__all__ = ["IntegrationError"]
