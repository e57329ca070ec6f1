"""How a PostgREST call can fail, as leaves of the one exception tree (core/errors.py).

`PostgrestTransient` and `PostgrestRejected` classify the raw answer inside the request
layer; callers of the store only ever see `StoreUnavailable` (Retryable: an outage, a
refused key) or `SupabaseRequestError` (Permanent: a bug or a schema out of date).
"""

from __future__ import annotations

from core.errors import Permanent, Retryable


class PostgrestTransient(Retryable):
    """A failure worth trying again: 5xx, timeout, connection refused or reset."""


class PostgrestRejected(Permanent):
    """A 4xx answer: the same request would fail the same way again."""

    def __init__(self, status: int, code: str | None, message: str | None) -> None:
        super().__init__(f"HTTP {status} {code or ''}: {message or ''}".strip())
        self.status = status
        self.code = code
        self.message = message


class SupabaseRequestError(Permanent):
    """PostgREST refused a request (missing function, constraint, bad input): a bug or a
    schema out of date, not an outage, so it is not retried and not a 503."""

    def __init__(self, operation: str, status: int, code: str | None, message: str | None) -> None:
        super().__init__(
            f"supabase {operation} rejected: HTTP {status} {code or '-'}: {message or ''}".strip()
        )
        self.operation = operation
        self.status = status
        self.code = code
