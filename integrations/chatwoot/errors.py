"""Chatwoot's errors, typed: the outbox retries `ChatwootUnavailable` and nothing else.

Only core's types are imported: integrations never depend on channels.
"""

from __future__ import annotations

from core.errors import (
    RETRYABLE_STATUSES,
    AuthFailed,
    ProviderRejected,
    ProviderUnavailable,
    Retryable,
    SendError,
)


class ChatwootError(SendError):
    """A Chatwoot call failed; catch this for "anything Chatwoot", raise a leaf.

    Still a legacy `SendError` (callers and tests treat Chatwoot failures as one until
    that class retires), but its flags are no longer passed in: `retryable`
    (429/5xx/timeouts/transport) and `auth_failed` (401/403) are derived from the leaf's
    type, so they cannot disagree with it. The API token never appears in the text.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(
            message,
            status=status,
            retryable=isinstance(self, Retryable),
            auth_failed=isinstance(self, AuthFailed),
        )


class ChatwootUnavailable(ChatwootError, ProviderUnavailable):
    """Not now: 408/425/429, 5xx, a timeout or a broken connection."""


class ChatwootRejected(ChatwootError, ProviderRejected):
    """Chatwoot refused, answered something unusable, or the call cannot be made as
    configured: the same call would fail the same way."""


class ChatwootAuthFailed(ChatwootRejected, AuthFailed):
    """401/403: the token was refused or its user may not do this."""


def chatwoot_error_for_status(status: int, message: str) -> ChatwootError:
    """The leaf a non-2xx answer stands for."""
    if status in (401, 403):
        return ChatwootAuthFailed(message, status=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        return ChatwootUnavailable(message, status=status)
    return ChatwootRejected(message, status=status)


__all__ = [
    "ChatwootAuthFailed",
    "ChatwootError",
    "ChatwootRejected",
    "ChatwootUnavailable",
    "chatwoot_error_for_status",
]
