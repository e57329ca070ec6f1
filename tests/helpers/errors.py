"""A provider failure known only by its HTTP status, for tests that script failures.

The dispatcher and agent tests stand in for "some adapter's error" without naming one:
the runtime classifies an untyped `ProviderError` by its status (429/5xx and 408/425
retried, any other 4xx dead), which is what these scripts rely on.
"""

from __future__ import annotations

from core.errors import ProviderError


class SendError(ProviderError):
    def __init__(self, message: str, *, status: int, retryable: bool | None = None) -> None:
        super().__init__(message, status=status)
        if retryable is not None and retryable != self.retryable:
            raise ValueError(f"a scripted HTTP {status} is {'' if self.retryable else 'not '}retryable")
