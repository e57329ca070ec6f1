"""The sales team, from prompts/sellers.toml: who can take a lead, and where each one is
reached (e-mail and calendar, Chatwoot agent, PipeRun user, booking link).

Read once at start: a broken file stops the bot with its path, the seller and the key in
the message. `runtime/seller_routing.py` picks among them; the rules a seller carries
(territory as UFs, product lines as keywords) are checked here, so routing never meets
an unusable value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.business_hours import WeeklySchedule
from core.config_files import read_toml
from core.lead_fields import fold, normalize_email, normalize_uf
from core.paths import PROJECT_ROOT

DEFAULT_SELLERS_PATH = PROJECT_ROOT / "prompts" / "sellers.toml"

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_URL_RE = re.compile(r"^https?://[^\s/]+\.[^\s]+$")
# What a product keyword and a lead's words are compared as: folded words.
_WORD_RE = re.compile(r"[a-z0-9]+")


class SellersError(ValueError):
    """prompts/sellers.toml is missing, malformed or names an unusable value."""


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(fold(text))


class Seller(BaseModel):
    """One seller. `key` is what the store records for a lead: keep it when the name
    changes, or the seller's leads and place in the rotation are lost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    name: str
    email: str
    calendar_id: str = ""
    chatwoot_agent_id: int | None = Field(default=None, gt=0)
    piperun_user_id: int | None = Field(default=None, gt=0)
    territory: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    hours: WeeklySchedule | None = None
    booking_url: str | None = None

    @field_validator("key")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _KEY_RE.match(value):
            raise ValueError(
                f"{value!r} is not a key; use lowercase letters, digits, '-' or '_' (e.g. \"ana-ribeiro\")"
            )
        return value

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        email = normalize_email(value)
        if email is None:
            raise ValueError("must not be empty")
        return email

    @field_validator("calendar_id", "booking_url")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    @field_validator("booking_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _URL_RE.match(value):
            raise ValueError(f"{value!r} is not a link; write it whole, starting with https://")
        return value

    @field_validator("territory", mode="before")
    @classmethod
    def _ufs(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        ufs: list[str] = []
        for item in value:
            try:
                uf = normalize_uf(item)
            except ValueError:
                uf = None
            if uf is None:
                raise ValueError(f'{item!r} is not a Brazilian state; write its UF, e.g. "SP"')
            if uf not in ufs:
                ufs.append(uf)
        return tuple(ufs)

    @field_validator("products")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for keyword in value:
            if not _words(keyword):
                raise ValueError(f"{keyword!r} is not a keyword (it has no letters or digits)")
        return tuple(keyword.strip() for keyword in value)

    @model_validator(mode="after")
    def _calendar_defaults_to_email(self) -> Seller:
        if not self.calendar_id:
            object.__setattr__(self, "calendar_id", self.email)
        return self

    def covers(self, uf: str | None) -> bool:
        """A seller with no territory covers every state; one with a territory only its own
        (an unknown state is in none)."""
        return not self.territory or (uf is not None and uf in self.territory)

    def sells(self, *texts: str | None) -> bool:
        """A seller with no product lines sells everything; else one of its keywords starts a
        word of the lead's interest or segment ("hamburguer" matches "Hambúrgueres"),
        ignoring case and accents."""
        if not self.products:
            return True
        words = [_words(text) for text in texts if text]
        return any(_starts_words(_words(keyword), said) for keyword in self.products for said in words)

    def works_at(self, at: datetime, zone: tzinfo) -> bool:
        """Within the seller's hours, read on the company's wall clock; no hours: always."""
        if self.hours is None:
            return True
        local = at.astimezone(zone)
        minute = local.hour * 60 + local.minute
        return any(interval.contains(minute) for interval in self.hours.for_weekday(local.weekday()))


def _starts_words(keyword: list[str], said: list[str]) -> bool:
    """The keyword's words in a row in `said`, its last one possibly cut short ("fb" of
    "fb300", "hamburguer" of "hamburgueres")."""
    n = len(keyword)
    for start in range(len(said) - n + 1):
        window = said[start : start + n]
        if window[:-1] == keyword[:-1] and window[-1].startswith(keyword[-1]):
            return True
    return False


class Sellers:
    """The sellers in the file's order (the tie-break of the rotation)."""

    def __init__(self, sellers: tuple[Seller, ...] | list[Seller] = ()) -> None:
        self._sellers = tuple(sellers)
        self._by_key = {seller.key: seller for seller in self._sellers}
        if len(self._by_key) != len(self._sellers):
            raise SellersError("two sellers share a key")

    def __iter__(self) -> Iterator[Seller]:
        return iter(self._sellers)

    def __len__(self) -> int:
        return len(self._sellers)

    def __bool__(self) -> bool:
        return bool(self._sellers)

    def __repr__(self) -> str:
        return f"Sellers({[seller.key for seller in self._sellers]})"

    @property
    def keys(self) -> list[str]:
        return [seller.key for seller in self._sellers]

    def get(self, key: str | None) -> Seller | None:
        return self._by_key.get(key) if key is not None else None


def load_sellers(path: Path | str | None = None) -> Sellers:
    """Read and check prompts/sellers.toml once, at start. No `[[sellers]]`: no one to
    route to (routing answers None and nobody is assigned)."""
    source = Path(path) if path is not None else DEFAULT_SELLERS_PATH
    data = read_toml(source, what="sellers", error=SellersError)
    unknown = sorted(set(data) - {"sellers"})
    if unknown:
        raise SellersError(f"{source}: unknown key(s) {unknown}; each seller is a [[sellers]] table")
    entries = data.get("sellers", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise SellersError(f"{source}: 'sellers' must be a list of [[sellers]] tables")
    sellers: list[Seller] = []
    for number, entry in enumerate(entries, start=1):
        label = f"seller {number}" + (f" ({entry['key']!r})" if isinstance(entry.get("key"), str) else "")
        try:
            seller = Seller.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(_problem(err) for err in exc.errors())
            raise SellersError(f"{source}: {label}: {problems}") from exc
        if any(other.key == seller.key for other in sellers):
            raise SellersError(f"{source}: {label}: key {seller.key!r} is used by an earlier seller")
        sellers.append(seller)
    return Sellers(sellers)


def _problem(err: Any) -> str:
    where = ".".join(str(part + 1) if isinstance(part, int) else str(part) for part in err["loc"])
    if err["type"] == "missing":
        return f"{where}: missing"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key (misspelt?)"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


__all__ = ["DEFAULT_SELLERS_PATH", "Seller", "Sellers", "SellersError", "load_sellers"]
