"""Chatwoot's errors, typed: the outbox retries `ChatwootUnavailable` and nothing else.

Only core's types are imported: integrations never depend on channels.
"""

from __future__ import annotations

from core.errors import (
    AuthFailed,
    ProviderRejected,
    ProviderUnavailable,
    is_retryable_status,
)
from integrations.errors import IntegrationError


class ChatwootError(IntegrationError):
    """A Chatwoot call failed; catch this for "anything Chatwoot", raise a leaf. The API
    token never appears in the text."""


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
    if is_retryable_status(status):
        return ChatwootUnavailable(message, status=status)
    return ChatwootRejected(message, status=status)


__all__ = [
    "ChatwootAuthFailed",
    "ChatwootError",
    "ChatwootRejected",
    "ChatwootUnavailable",
    "chatwoot_error_for_status",
]
