"""Access tokens for Google Calendar, minted over the app's aiohttp session.

Two ways to act as a seller:

- a service account with domain-wide delegation: a JWT signed with the account's key
  (RS256, by google-auth's `RSASigner` and `jwt.encode`: a well-kept library signs, we do
  not write RSA) with `iss` the account, `sub` the seller's e-mail, `scope`, `aud` the
  token URL, exchanged at the token URL with grant_type
  urn:ietf:params:oauth:grant-type:jwt-bearer
  (https://developers.google.com/identity/protocols/oauth2/service-account#httprest);
- the seller's own OAuth refresh token: grant_type=refresh_token with the app's client id
  and secret (https://developers.google.com/identity/protocols/oauth2/web-server#offline).

google-auth's own refresh goes through its synchronous `requests` transport, so only its
signer is used here; the POST is ours. Tokens are cached per identity until shortly
before they expire; they never reach a log line, a URL or an error's text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from google.auth import crypt, jwt
from pydantic import SecretStr

from core.logging import get_logger
from integrations.google_calendar.errors import (
    SERVICE_ACCOUNT_ENV,
    GoogleCalendarAuthFailed,
    GoogleCalendarError,
    GoogleCalendarUnavailable,
    token_error_for,
)

log = get_logger(__name__)

DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google's assertions live at most an hour.
ASSERTION_LIFETIME_S = 3600
# A token is renewed this long before Google says it expires (clock skew, a slow call).
EXPIRY_MARGIN_S = 300.0
_SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key")
# google-auth's signing functions, typed (the library leaves them unannotated).
_encode_jwt: Callable[[crypt.Signer, Mapping[str, Any]], bytes] = jwt.encode
_rsa_signer: Callable[[Mapping[str, Any]], crypt.Signer] = crypt.RSASigner.from_service_account_info


@dataclass(frozen=True, slots=True)
class ServiceAccountCredentials:
    """A service account key (Google's JSON key file, as a mapping) acting as `subject`
    (the seller's Workspace e-mail, through domain-wide delegation); no subject acts as the
    account itself, which can only use calendars shared with it and cannot invite."""

    info: Mapping[str, Any] = field(repr=False)
    subject: str | None = None

    @property
    def client_email(self) -> str:
        return str(self.info.get("client_email") or "")

    @property
    def cache_key(self) -> tuple[str, ...]:
        return ("sa", self.client_email, str(self.info.get("private_key_id") or ""), self.subject or "")

    @property
    def who(self) -> str:
        """The identity for log lines and errors (never the key)."""
        return f"service account {self.client_email}" + (f" as {self.subject}" if self.subject else "")


@dataclass(frozen=True, slots=True)
class OAuthRefreshCredentials:
    """The seller's OAuth refresh token, and the app's OAuth client that obtained it."""

    client_id: str
    client_secret: SecretStr = field(repr=False)
    refresh_token: SecretStr = field(repr=False)
    account: str | None = None  # the seller's e-mail, for log lines only

    @property
    def cache_key(self) -> tuple[str, ...]:
        digest = hashlib.sha256(self.refresh_token.get_secret_value().encode("utf-8")).hexdigest()
        return ("oauth", self.client_id, digest)

    @property
    def who(self) -> str:
        return f"OAuth refresh token of {self.account or 'the seller'}"


CalendarCredentials = ServiceAccountCredentials | OAuthRefreshCredentials


def service_account_info(*, json_text: str | None = None, file: str | Path | None = None) -> dict[str, Any]:
    """The key from GOOGLE_SERVICE_ACCOUNT_JSON (the JSON itself) or _FILE (its path),
    checked for the fields a signature needs. Raises GoogleCalendarAuthFailed with the
    operator's next step; the key's text never appears in it."""
    source = "GOOGLE_SERVICE_ACCOUNT_JSON"
    text = json_text
    if not (text and text.strip()) and file:
        source = "GOOGLE_SERVICE_ACCOUNT_FILE"
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise GoogleCalendarAuthFailed(
                f"{source}: cannot read {str(file)!r} ({type(exc).__name__}): put the path of the "
                "service account's JSON key there"
            ) from None
    if not (text and text.strip()):
        raise GoogleCalendarAuthFailed(f"{SERVICE_ACCOUNT_ENV} is not set: no service account key")
    try:
        info = json.loads(text)
    except ValueError:
        raise GoogleCalendarAuthFailed(
            f"{source} is not JSON: download the key again (IAM > Service accounts > Keys > Add key > JSON)"
        ) from None
    missing = [name for name in _SERVICE_ACCOUNT_FIELDS if not isinstance(info, dict) or not info.get(name)]
    if missing or info.get("type", "service_account") != "service_account":
        raise GoogleCalendarAuthFailed(
            f"{source} is not a service account key (missing: {', '.join(missing) or 'type'}): "
            "download a JSON key of the service account"
        )
    return dict(info)


@dataclass(slots=True)
class _Cached:
    token: str
    expires_at: float


class TokenSource:
    """Mints and caches access tokens; one per app (it belongs to the Calendar client)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str = DEFAULT_TOKEN_URL,
        scope: str = CALENDAR_SCOPE,
        timeout_s: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._token_url = token_url
        self._scope = scope
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}
        self._signers: dict[tuple[str, ...], crypt.Signer] = {}

    async def token(self, credentials: CalendarCredentials) -> str:
        """A valid access token for these credentials, from the cache when still fresh."""
        key = credentials.cache_key
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one mint per identity at a time: concurrent turns share it
            cached = self._cache.get(key)
            if cached is not None and self._clock() < cached.expires_at - EXPIRY_MARGIN_S:
                return cached.token
            fresh = await self._mint(credentials)
            self._cache[key] = fresh
            return fresh.token

    def invalidate(self, credentials: CalendarCredentials) -> None:
        """Forget the cached token (Google refused it: revoked, or the key rotated)."""
        self._cache.pop(credentials.cache_key, None)

    def assertion(self, credentials: ServiceAccountCredentials) -> str:
        """The signed JWT a service account exchanges for an access token."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": credentials.client_email,
            "scope": self._scope,
            "aud": self._token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        if credentials.subject:
            claims["sub"] = credentials.subject
        signed = _encode_jwt(self._signer(credentials), claims)
        return signed.decode("ascii")

    def _signer(self, credentials: ServiceAccountCredentials) -> crypt.Signer:
        key = credentials.cache_key[:3]
        signer = self._signers.get(key)
        if signer is None:
            try:
                signer = _rsa_signer(credentials.info)
            except (ValueError, TypeError) as exc:  # google.auth's MalformedError is a ValueError
                raise GoogleCalendarAuthFailed(
                    f"the private key of {credentials.who} cannot be read ({type(exc).__name__}): "
                    f"put the service account's JSON key, unchanged, in {SERVICE_ACCOUNT_ENV}"
                ) from None
            self._signers[key] = signer
        return signer

    async def _mint(self, credentials: CalendarCredentials) -> _Cached:
        if isinstance(credentials, ServiceAccountCredentials):
            form = {"grant_type": JWT_BEARER, "assertion": self.assertion(credentials)}
            secrets: tuple[str, ...] = (form["assertion"],)
        else:
            form = {
                "grant_type": "refresh_token",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret.get_secret_value(),
                "refresh_token": credentials.refresh_token.get_secret_value(),
            }
            secrets = (form["client_secret"], form["refresh_token"])
        service_account = isinstance(credentials, ServiceAccountCredentials)
        started = self._clock()
        try:
            async with self._session.post(
                self._token_url, data=form, headers={"Accept": "application/json"}, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.text(errors="replace")
                retry_after = retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            log.warning("google_token_failed", who=credentials.who, status=None, error="timeout")
            raise GoogleCalendarUnavailable(
                f"google_calendar: minting a token for {credentials.who} timed out after {self._timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            what = type(exc).__name__
            log.warning("google_token_failed", who=credentials.who, status=None, error=what)
            raise GoogleCalendarUnavailable(
                f"google_calendar: minting a token for {credentials.who} failed: {what}"
            ) from None
        data = _loads(raw)
        token = data.get("access_token") if isinstance(data, dict) else None
        if 200 <= status < 300 and isinstance(token, str) and token:
            expires_in = data.get("expires_in") if isinstance(data, dict) else None
            lifetime = (
                float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 3600.0
            )
            log.info("google_token_minted", who=credentials.who, expires_in=int(lifetime))
            return _Cached(token, started + lifetime)
        error = data.get("error") if isinstance(data, dict) else None
        code = error if isinstance(error, str) else None
        description = data.get("error_description") if isinstance(data, dict) else None
        detail = _scrub(str(description or code or raw[:200] or "no body"), secrets)[:300]
        failure: GoogleCalendarError = token_error_for(
            f"google_calendar: Google refused a token for {credentials.who} (HTTP {status}: {detail})",
            status=status,
            error=code,
            service_account=service_account,
            retry_after=retry_after,
        )
        if 200 <= status < 300:  # a 2xx without a token is a proxy page, not Google's answer
            failure = GoogleCalendarUnavailable(
                f"google_calendar: the token URL answered HTTP {status} without an access token",
                status=status,
            )
        (log.warning if failure.retryable else log.error)(
            "google_token_failed", who=credentials.who, status=status, error=code, retryable=failure.retryable
        )
        raise failure


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def retry_after_s(value: str | None, *, cap: float = 3600.0) -> float | None:
    """Seconds in a Retry-After header (delta-seconds only; Google sends no dates here)."""
    try:
        seconds = float((value or "").strip())
    except ValueError:
        return None
    return min(seconds, cap) if seconds >= 0 else None


__all__ = [
    "CALENDAR_SCOPE",
    "DEFAULT_TOKEN_URL",
    "EXPIRY_MARGIN_S",
    "JWT_BEARER",
    "CalendarCredentials",
    "OAuthRefreshCredentials",
    "ServiceAccountCredentials",
    "TokenSource",
    "retry_after_s",
    "service_account_info",
]
