"""The one exception tree of the bot: every error it raises on purpose is an `SDRError`.

Two branches say what to do about it, so no caller reads a flag or a message to decide:

- `Retryable`: the same call may succeed later (a provider's 429/5xx, a timeout, the
  store or the model briefly down). The turn runner and the outbox retry these, and only
  they do: adapters and clients make one attempt and raise.
- `Permanent`: trying again cannot help (credentials refused, a recipient that cannot
  receive, a closed 24-hour window, a payload the provider rejects). The outbox
  dead-letters the item and records why; a webhook answers 4xx.

Typed leaves name the cases callers act on (`AuthFailed` marks the channel `error` in
/api/health, `InvalidRecipient` is recorded on the message, `OutsideWindow` switches to
an approved template). This module is ground floor: it imports nothing of the project.
"""

from __future__ import annotations


class SDRError(Exception):
    """Root of every error the bot raises on purpose."""


class Retryable(SDRError):
    """Trying the same call again later may succeed; `retry_after` (seconds) when the
    provider said how long to wait."""

    retry_after: float | None = None


class Permanent(SDRError):
    """Trying again cannot succeed as things are."""


class WebhookRejected(Permanent):
    """The request is not acceptable; `status` is the 4xx to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoreUnavailable(Retryable):
    """The store cannot accept writes now; webhooks answer 503 so providers retry."""


class LLMUnavailable(Retryable):
    """The model could not answer now; the turn stays pending and is retried later."""


class LLMRefused(Permanent):
    """The model answered but not with the structured output we require."""


class ProviderError(SDRError):
    """A call to a provider (a channel, Chatwoot, PipeRun, Meta, a webhook subscriber)
    failed. Raise one of the leaves below, never this class itself; `status` is the HTTP
    status when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    # What callers act on, read from the type (never a flag passed in that could disagree
    # with it). An error known only by its HTTP status counts as that status says.
    @property
    def retryable(self) -> bool:
        if isinstance(self, (Retryable, Permanent)):
            return isinstance(self, Retryable)
        return self.status is not None and is_retryable_status(self.status)

    @property
    def auth_failed(self) -> bool:
        if isinstance(self, (Retryable, Permanent)):
            return isinstance(self, AuthFailed)
        return self.status in (401, 403)

    @property
    def invalid_recipient(self) -> bool:
        return isinstance(self, InvalidRecipient)


class ProviderUnavailable(ProviderError, Retryable):
    """429, 5xx, a timeout or a broken connection: the provider may take it later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ProviderRejected(ProviderError, Permanent):
    """The provider understood and refused (a 4xx other than the ones worth waiting for)."""


class AuthFailed(ProviderRejected):
    """401/403: bad or expired credentials. Marks the channel `error` in /api/health."""


class InvalidRecipient(ProviderRejected):
    """The number or user cannot receive messages; recorded on the message."""


class OutsideWindow(ProviderRejected):
    """The channel refused free text because the lead's last message is older than 24
    hours: the runtime falls back to what is still allowed (an approved template on
    WhatsApp, a human reply with the HUMAN_AGENT tag on Instagram)."""


# Statuses that say "not now" rather than "never": request timeout, too early, rate limit.
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def is_retryable_status(status: int) -> bool:
    """The one rule for an HTTP status every adapter, client and the outbox share: request
    timeouts, throttling and server trouble may pass; any other 4xx will not."""
    return status in RETRYABLE_STATUSES or status >= 500
