"""Downloading the media a webhook names without letting the webhook aim us inside the network.

A media URL is whatever the payload says, and payloads can be forged: fetched blindly,
one reaches the cloud metadata service, a database console next to the bot, or WAHA's
own API (a GET on /api/sendText sends a message), and whatever answers is handed to
Whisper or shown to the model. So a URL is fetched only when it points at a public
address, or at a provider origin we were configured with (WAHA_URL, ZAPI_BASE_URL,
META_GRAPH_URL) or one listed in MEDIA_TRUSTED_ORIGINS.

The address check happens where the connection is made: our resolver classifies every
address a name resolves to and the connection can only use those, so a name cannot
answer "public" to the check and "10.0.0.5" to the connect (DNS rebinding). Redirects
are followed by hand so each hop is checked the same way, and credentials go only to
the origin and paths they belong to, never onward after a hop elsewhere.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from channels.errors import ChannelUnavailable, MediaRefused, MediaTooLarge, error_for_status
from core.errors import ProviderError
from core.logging import get_logger

log = get_logger(__name__)

MEDIA_CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# WAHA serves received media under <base>/api/files/; everything else on that origin is
# its API, which a media URL must never reach.
WAHA_FILES_PATH = "/api/files/"

# Ranges `ipaddress` does not already call private, loopback, link-local or reserved.
_CGNAT = ip_network("100.64.0.0/10")  # carrier-grade NAT; also Alibaba's metadata (100.100.100.200)
_NAT64 = ip_network("64:ff9b::/96")  # IPv6 wrapping of an IPv4 address

IPAddress = IPv4Address | IPv6Address
# host, port -> the IP addresses (text) the name stands for
Lookup = Callable[[str, int], Awaitable[Sequence[str]]]


class _AddressRefused(OSError):
    """Raised inside the connector's resolver; an OSError so aiohttp hands it back whole."""


# --- origins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: URL) -> Origin:
        return cls(url.scheme.lower(), _normal_host(url.raw_host or ""), url.port or 0)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_origin(text: str) -> Origin:
    """An origin as MEDIA_TRUSTED_ORIGINS spells it: scheme://host[:port], nothing more.

    Raises ValueError for anything else, so a typo cannot quietly trust a wider space."""
    url = parse_media_url(text, error=ValueError)
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
        raise ValueError(f"{text!r} is not an origin (scheme://host[:port])")
    return Origin.of(url)


def _normal_host(host: str) -> str:
    host = host.rstrip(".").lower()
    try:
        return str(ip_address(host))
    except ValueError:
        return host


def parse_media_url(url: object, *, error: type[Exception] = MediaRefused) -> URL:
    """A media URL from a webhook: absolute http(s), with a host and no userinfo."""
    if not isinstance(url, (str, URL)):
        raise error("media url is not a valid URL")
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except (TypeError, ValueError):
        raise error("media url is not a valid URL") from None
    if parsed.scheme.lower() not in ("http", "https") or not parsed.raw_host:
        raise error("media url must be http(s)")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise error("media url must not carry credentials")
    return parsed


# --- addresses -------------------------------------------------------------------------


def blocked_address(ip: IPAddress) -> bool:
    """True for every address that is not plainly on the public internet."""
    if isinstance(ip, IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and blocked_address(embedded):
            return True
    if isinstance(ip, IPv4Address) and ip in _CGNAT:
        return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host names without DNS, in every spelling a connect would accept.

    Besides dotted quads and IPv6, the C resolver reads `2130706433`, `0x7f.1` and
    `017700000001` as 127.0.0.1; and aiohttp skips the resolver for any all-digit
    host, so a numeric host that is not an address in some spelling is refused too.
    """
    host = host.rstrip(".")
    try:
        return ip_address(host)
    except ValueError:
        pass
    try:
        return IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        pass
    if ":" in host or host.replace(".", "").isdigit():
        raise MediaRefused("media url has a malformed numeric host")
    return None


def _internal_name(host: str) -> bool:
    """Names that can only mean a machine near us: `localhost` and its subdomains
    (RFC 6761), and single-label names found through the resolver's search list."""
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost") or "." not in host


async def system_lookup(host: str, port: int) -> list[str]:
    """The addresses the operating system gives for `host`, in its order, once each."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


class _CheckingResolver(AbstractResolver):
    """The only resolver the media connection uses, so the addresses checked are the
    addresses connected to. Told before each hop which host is expected and whether its
    origin is trusted; any other host, or any non-public answer for an untrusted one, is
    refused before a socket is opened."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self._host: str | None = None
        self._allow_private = False

    def expect(self, host: str, *, allow_private: bool) -> None:
        self._host = _normal_host(host)
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if _normal_host(host) != self._host:
            raise _AddressRefused(f"unexpected host {host}")
        answers = await self._lookup(host, port)
        results: list[ResolveResult] = []
        for answer in answers:
            try:
                ip = ip_address(answer)
            except ValueError:
                raise _AddressRefused(f"{host} resolved to a malformed address") from None
            if not self._allow_private and blocked_address(ip):
                # One bad answer refuses the name: a mixed answer is how rebinding starts.
                raise _AddressRefused(f"{host} resolves to a non-public address")
            ip_family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, ip_family):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": answer,
                    "port": port,
                    "family": ip_family,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        if not results:
            raise OSError(f"{host} has no usable address")
        return results

    async def close(self) -> None:
        return None


def _refusal(exc: BaseException) -> _AddressRefused | None:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, _AddressRefused):
            return seen
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, _AddressRefused):
            return os_error
        seen = seen.__cause__ or seen.__context__
    return None


# --- credentials -----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Headers that belong to one provider origin and, within it, one path prefix."""

    headers: Mapping[str, str]
    origin: Origin
    path_prefix: str = "/"

    def cover(self, url: URL) -> bool:
        return Origin.of(url) == self.origin and url.raw_path.startswith(self.path_prefix)


# --- the fetcher -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """Every provider origin this deployment talks to, shared by all channels.

    Each adapter builds its fetcher from the whole set, not just its own base URL: a
    webhook of one provider may name media on another's storage, and the policy must
    be the same whichever channel downloads it. Raw text, not parsed origins, so a bad
    MEDIA_TRUSTED_ORIGINS entry is logged at the download that meets it, as before.
    """

    waha_url: str | None
    zapi_base_url: str | None
    meta_graph_url: str | None
    trusted_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class MediaFetcher:
    """The media download policy: which origins are trusted and with which paths.

    `origins` maps a trusted origin to the path prefix media may have there: a URL on
    that origin outside the prefix is refused even when the address is public (WAHA's
    API lives next to its files). `lookup` resolves names (the system's by default).
    """

    origins: Mapping[Origin, str] = field(default_factory=dict)
    lookup: Lookup = system_lookup
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_config(cls, config: MediaConfig, *, lookup: Lookup | None = None) -> MediaFetcher:
        """Provider base URLs first, so MEDIA_TRUSTED_ORIGINS cannot widen WAHA to its API."""
        origins: dict[Origin, str] = {}
        providers: list[tuple[str | None, str]] = [
            (config.waha_url, WAHA_FILES_PATH),
            (config.zapi_base_url, "/"),
            (config.meta_graph_url, "/"),
        ]
        for base, media_path in providers:
            if not base:
                continue
            try:
                url = parse_media_url(base, error=ValueError)
            except ValueError:
                continue
            prefix = url.raw_path.rstrip("/") + media_path if media_path != "/" else "/"
            origins.setdefault(Origin.of(url), prefix)
        for entry in config.trusted_origins:
            try:
                origins.setdefault(parse_origin(entry), "/")
            except ValueError:
                log.warning("media_trusted_origin_invalid", entry=entry)
        return cls(origins=origins, lookup=lookup or system_lookup)

    def check(self, url: str | URL) -> tuple[URL, bool]:
        """Refuse what can be refused without DNS; returns the URL and whether its
        origin is trusted (any address allowed) rather than held to public addresses."""
        parsed = parse_media_url(url)
        host = parsed.raw_host or ""
        prefix = self.origins.get(Origin.of(parsed))
        if prefix is not None:
            if not parsed.raw_path.startswith(prefix):
                raise MediaRefused(f"media url on {host} is outside its media path")
            return parsed, True
        literal = literal_address(host)
        if literal is not None and blocked_address(literal):
            raise MediaRefused(f"media url points at a non-public address ({host})")
        if literal is None and _internal_name(host):
            raise MediaRefused(f"media url points at an internal host name ({host})")
        return parsed, False

    async def fetch(
        self,
        url: str | URL,
        *,
        max_bytes: int,
        timeout: aiohttp.ClientTimeout,
        credentials: Credentials | None = None,
        label: str | None = None,
        prefix: str = "",
        auth_statuses: Collection[int] = (),
        http_error: Callable[[aiohttp.ClientResponse], Awaitable[ProviderError]] | None = None,
    ) -> bytes:
        """Download at most `max_bytes`, hop by hop, from where the policy allows.

        `label` names the media in size refusals (default "media from <host>"), `prefix`
        names the provider in transport failures, `auth_statuses` are the statuses that
        mean our credentials were refused, and `http_error` replaces the default
        error for a non-2xx answer when the provider's error body says more.

        The connection is private to this download (its own resolver, no cookie jar),
        so nothing learnt on one hop or one download leaks into the next.
        """
        current, trusted = self.check(url)
        first_host = current.raw_host or ""
        resolver = _CheckingResolver(self.lookup)
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
        # Credentials ride only while every hop so far stayed inside their origin and path.
        carried = credentials
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as session:
            for _hop in range(self.max_redirects + 1):
                host = current.raw_host or ""
                if carried is not None and not carried.cover(current):
                    carried = None
                headers = dict(carried.headers) if carried is not None else {}
                resolver.expect(host, allow_private=trusted)
                try:
                    async with session.get(
                        current, headers=headers, timeout=timeout, allow_redirects=False
                    ) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in _REDIRECT_STATUSES and location:
                            try:
                                target = current.join(URL(location))
                            except (TypeError, ValueError):
                                raise MediaRefused(
                                    f"media from {host} redirected to an invalid URL"
                                ) from None
                            current, trusted = self.check(target)
                            continue
                        return await _read(
                            resp,
                            host=host,
                            max_bytes=max_bytes,
                            label=label,
                            prefix=prefix,
                            auth_statuses=auth_statuses,
                            http_error=http_error,
                        )
                except ProviderError:
                    raise
                except TimeoutError:
                    raise ChannelUnavailable(f"{prefix}media download from {host} timed out") from None
                except (aiohttp.ClientError, OSError) as exc:
                    refused = _refusal(exc)
                    if refused is not None:
                        raise MediaRefused(f"media url refused: {refused}") from None
                    raise ChannelUnavailable(
                        f"{prefix}media download from {host} failed: {type(exc).__name__}"
                    ) from None
        raise MediaRefused(f"media from {first_host} redirected more than {self.max_redirects} times")


async def _read(
    resp: aiohttp.ClientResponse,
    *,
    host: str,
    max_bytes: int,
    label: str | None,
    prefix: str,
    auth_statuses: Collection[int],
    http_error: Callable[[aiohttp.ClientResponse], Awaitable[ProviderError]] | None,
) -> bytes:
    """The body, counted while it streams: Content-Length may be missing or lie."""
    what = label if label is not None else f"media from {host}"
    if not 200 <= resp.status < 300:
        if http_error is not None:
            raise await http_error(resp)
        raise error_for_status(
            f"{prefix}media download from {host} failed: HTTP {resp.status}",
            resp.status,
            auth_statuses=auth_statuses,
        )
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise MediaTooLarge(f"{what} is {declared} bytes, limit is {max_bytes}")
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(MEDIA_CHUNK):
        buf += chunk
        if len(buf) > max_bytes:
            raise MediaTooLarge(f"{what} exceeds the {max_bytes} bytes limit")
    return bytes(buf)


__all__ = [
    "MAX_REDIRECTS",
    "MEDIA_CHUNK",
    "WAHA_FILES_PATH",
    "Credentials",
    "Lookup",
    "MediaConfig",
    "MediaFetcher",
    "MediaRefused",
    "Origin",
    "blocked_address",
    "literal_address",
    "parse_media_url",
    "parse_origin",
    "system_lookup",
]
