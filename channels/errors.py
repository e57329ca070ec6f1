"""The errors channel adapters raise: the typed leaves of core/errors.py, per channel.

Callers decide by type (`Retryable` is retried by the outbox, `AuthFailed` marks the
channel `error` in /api/health, `InvalidRecipient` is recorded on the message), so an
adapter picks the leaf and makes one attempt; it never retries by itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from core.errors import (
    AuthFailed,
    InvalidRecipient,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    is_retryable_status,
)


class ChannelError(ProviderError):
    """A channel's refusal or failure; catch this for "anything this channel", raise a leaf."""


class ChannelUnavailable(ChannelError, ProviderUnavailable):
    """429, 5xx, a timeout or a broken connection: the outbox tries again later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ChannelRejected(ChannelError, ProviderRejected):
    """The provider (or the adapter, before asking it) refused for good."""


class ChannelAuthFailed(ChannelError, AuthFailed):
    """Our credentials were refused: an operator must act."""


class ChannelInvalidRecipient(ChannelError, InvalidRecipient):
    """The contact cannot receive messages through this channel."""


class RecipientNotOnWhatsApp(ChannelInvalidRecipient):
    """The number has no WhatsApp account (WhatsApp Cloud error 131026 "Message
    undeliverable", or a gateway saying the number does not exist): the runtime records
    it and hands the lead to a seller instead of trying again. An `InvalidRecipient`, so
    it is `Permanent` and never retried; a distinct type so a first touch can catch it."""


class MediaTooLarge(ChannelRejected):
    """The media is bigger than we are willing to hold in memory; retrying cannot help."""


class MediaRefused(ChannelRejected):
    """The media URL points where we will not go; asking again cannot change that."""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After: <seconds>` answer; an HTTP date is left to the backoff."""
    value = (headers.get("Retry-After") or "").strip()
    if not value.isdigit():
        return None
    return float(value)


def error_for_status(
    message: str,
    status: int,
    *,
    auth_statuses: Collection[int] = (401, 403),
    wait: float | None = None,
) -> ChannelError:
    """The leaf a plain HTTP status stands for when the provider's body says nothing finer."""
    if status in auth_statuses:
        return ChannelAuthFailed(message, status=status)
    if is_retryable_status(status):
        return ChannelUnavailable(message, status=status, retry_after=wait)
    return ChannelRejected(message, status=status)


__all__ = [
    "ChannelAuthFailed",
    "ChannelError",
    "ChannelInvalidRecipient",
    "ChannelRejected",
    "ChannelUnavailable",
    "MediaRefused",
    "MediaTooLarge",
    "RecipientNotOnWhatsApp",
    "error_for_status",
    "retry_after",
]
