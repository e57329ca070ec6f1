"""PipeRun's errors, typed: the outbox retries `PipeRunUnavailable` and nothing else."""

from __future__ import annotations

from core.errors import AuthFailed, ProviderRejected, ProviderUnavailable
from integrations.errors import IntegrationError


class PipeRunError(IntegrationError):
    """A PipeRun call failed; catch this for "anything PipeRun", raise a leaf.

    `retryable` (429/5xx/timeouts/transport) and `auth_failed` (401/403) are read from
    the type; `retry_after_s` is a 429's or 503's Retry-After, so the outbox can wait at
    least that long.
    """

    @property
    def retry_after_s(self) -> float | None:
        return getattr(self, "retry_after", None)


class PipeRunUnavailable(PipeRunError, ProviderUnavailable):
    """Not now: 429, 5xx, a timeout, a broken connection, or an answer without the record
    (sync_lead finds whatever was created before creating again, so a retry is safe)."""


class PipeRunRejected(PipeRunError, ProviderRejected):
    """PipeRun refused (4xx, `success: false`), or the call cannot be made as configured."""


class PipeRunAuthFailed(PipeRunRejected, AuthFailed):
    """401 (token refused) or 403 (the token's user may not do this)."""


__all__ = ["PipeRunAuthFailed", "PipeRunError", "PipeRunRejected", "PipeRunUnavailable"]
