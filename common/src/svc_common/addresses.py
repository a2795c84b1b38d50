"""Which network addresses and user-supplied URLs the platform may call: the one rule for every
service (base URLs when a config is saved and when a model service connects; fetched image URLs
and image-server base URLs next).

An address is public when it is global unicast and, where it embeds an IPv4 address (IPv4-mapped,
IPv4-compatible, IPv4-translated, 6to4, NAT64, Teredo), the embedded address is public too: those
spellings reach the IPv4 host they embed, so `[::127.0.0.1]` is loopback whatever its prefix says.
A host is allowed when the operator allow-listed it, or when every address it resolves to is
public. Pure standard library, so every service and library can import it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "MAX_URL_CHARS",
    "RESOLVE_TIMEOUT_SECONDS",
    "AddressNotAllowed",
    "IPAddress",
    "UrlParts",
    "UrlRejected",
    "address_refusal",
    "check_addresses",
    "check_url",
    "is_public_address",
    "name_refusal",
    "normalise_host",
    "normalise_hosts",
    "parse_ip_literal",
    "split_url",
]

MAX_URL_CHARS = 2048
RESOLVE_TIMEOUT_SECONDS = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]

# Names that reach a cloud metadata service without going through a resolvable public address.
_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})

# Refused whatever the Python version's `is_global` says about them (its tables have changed
# between patch releases): shared address space (CGNAT), IETF protocol assignments, the 6to4
# relay anycast, benchmarking, documentation, multicast and the reserved/broadcast block.
_NOT_PUBLIC_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_NOT_PUBLIC_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/128",
        "::1/128",
        "100::/64",  # discard-only
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # ORCHID
        "2001:20::/28",  # ORCHIDv2
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "ff00::/8",  # multicast
        # NAT64 local-use prefix (RFC 8215): where the IPv4 address sits depends on the local
        # prefix length, so it cannot be judged; nothing public needs it.
        "64:ff9b:1::/48",
    )
)
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _low_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address reaches through a transition mechanism, or None."""
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return [address.ipv4_mapped]
    if address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED or address in _NAT64:
        return [_low_ipv4(address)]  # ::a.b.c.d, ::ffff:0:a.b.c.d, 64:ff9b::a.b.c.d
    if address.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return [address.sixtofour]
    if address.teredo is not None:  # 2001:0::/32: the server and the (de-obfuscated) client
        return list(address.teredo)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether the platform may connect to this address on a user's behalf."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # a zone index only means something on a local link
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return all(is_public_address(v4) for v4 in embedded)
        if any(address in network for network in _NOT_PUBLIC_V6):
            return False
    elif any(address in network for network in _NOT_PUBLIC_V4):
        return False
    return address.is_global and not address.is_multicast


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names literally (brackets and a zone allowed), else None.

    Only the canonical dotted and colon forms: `2130706433` or `0177.0.0.1` are names here and go
    through the resolver, which is where they are judged (getaddrinfo reads them as 127.0.0.1).
    """
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def name_refusal(host: str) -> str | None:
    """Why `host` is refused before any resolution: a metadata service's name, or an address
    literal that is not public. None when only resolving it can tell (or it is a public literal).
    `host` is normalised (see normalise_host); the allow-list is the caller's to apply first."""
    if host in _METADATA_HOSTS:
        return f"host {host} is a cloud metadata service"
    literal = parse_ip_literal(host) or _legacy_ipv4(host)
    if literal is not None:
        return address_refusal(host, [literal])
    return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address of a decimal, octal, hex or short IPv4 spelling (`2130706433`, `0177.0.0.1`,
    `127.1`): resolvers read them as inet_aton does, whatever an HTTP client makes of them."""
    if not host or any(ch not in "0123456789abcdefx." for ch in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def address_refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    """Why connecting to `host` at these addresses is refused, or None when every one is public."""
    for address in addresses:
        if not is_public_address(address):
            return (
                f"host {host} resolves to a non-public address ({address}); loopback, "
                "link-local, private and metadata addresses are not allowed unless the operator "
                "allow-lists the host"
            )
    return None


class UrlRejected(ValueError):
    """The message says what is wrong with the URL, in words a user can act on."""


# The same failure, named for where it is raised at connect time.
AddressNotAllowed = UrlRejected


def normalise_host(host: str) -> str:
    """A host as URLs and allow-lists compare it: lower case, no brackets, no trailing dot."""
    return host.strip().strip("[]").lower().rstrip(".")


def normalise_hosts(hosts: Iterable[str]) -> list[str]:
    """An allow-list setting's hosts, normalised, empty entries dropped."""
    return [normalise_host(h) for h in hosts if h.strip()]


@dataclass(frozen=True, slots=True)
class UrlParts:
    url: str  # trimmed, without a trailing slash
    scheme: str
    host: str  # normalised (see normalise_host)
    port: int


def split_url(url: str, what: str = "base_url") -> UrlParts:
    """The parts of an http(s) URL a user may supply, or UrlRejected naming `what` is wrong."""
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise UrlRejected(f"{what} is longer than {MAX_URL_CHARS} characters")
    if any(not ("\x21" <= ch <= "\x7e") for ch in url):
        raise UrlRejected(f"{what} may contain only printable ASCII characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRejected(f"{what} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRejected(f"{what} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UrlRejected(f"{what} must not contain credentials (user:password@); set an API key")
    if parts.query or parts.fragment:
        raise UrlRejected(f"{what} must not contain a query string or fragment")
    host = normalise_host(parts.hostname or "")
    if not host:
        raise UrlRejected(f"{what} has no host")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return UrlParts(url.rstrip("/"), parts.scheme, host, port)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
    )
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_addresses(
    host: str, port: int, allowed_hosts: Collection[str], *, resolve: Resolve = _resolve
) -> None:
    """Raise UrlRejected unless `host` is allow-listed or names/resolves to public addresses only.

    This is the check when a URL is saved. A connection must not rely on it: DNS answers change,
    so a client resolves again and connects only to addresses it checked (upstream.transport).
    """
    if host in allowed_hosts:
        return
    refusal = name_refusal(host)
    if refusal is not None:
        raise UrlRejected(refusal)
    literal = parse_ip_literal(host)
    if literal is not None:
        return
    try:
        addresses = await resolve(host, port)
    except (OSError, TimeoutError, UnicodeError, ValueError):
        raise UrlRejected(f"host {host} does not resolve") from None
    if not addresses:
        raise UrlRejected(f"host {host} does not resolve")
    refusal = address_refusal(host, addresses)
    if refusal is not None:
        raise UrlRejected(refusal)


async def check_url(
    url: str,
    allowed_hosts: Collection[str],
    what: str = "base_url",
    *,
    resolve: Resolve = _resolve,
) -> str:
    """The URL to store (trimmed, without a trailing slash), or UrlRejected."""
    parts = split_url(url, what)
    try:
        await check_addresses(parts.host, parts.port, allowed_hosts, resolve=resolve)
    except UrlRejected as err:
        raise UrlRejected(f"{what} {err}") from None
    return parts.url
