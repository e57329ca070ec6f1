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


class SendError(SDRError):
    """A provider refused or failed a send. `retryable` drives the outbox policy.

    `auth_failed` (401/403: bad or expired credentials) marks the channel as `error`
    in /api/health; `invalid_recipient` (the number/user cannot receive) is permanent
    and recorded on the message.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        auth_failed: bool = False,
        invalid_recipient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.auth_failed = auth_failed
        self.invalid_recipient = invalid_recipient
