"""Which user-supplied base URLs a model service may be pointed at.

A base URL must be http(s) and every address its host resolves to must be public: loopback,
link-local (cloud metadata at 169.254.169.254 included), private, shared, multicast and reserved
addresses are refused, unless the operator allow-listed the host. This check runs when the URL is
saved; model services must check again when they connect (DNS answers can change).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

MAX_BASE_URL_CHARS = 2048
RESOLVE_TIMEOUT_SECONDS = 3.0

# Names that reach a cloud metadata service without going through a resolvable public address.
_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BaseUrlRejected(ValueError):
    """The message says what is wrong with the URL, in words a user can act on."""


def is_public_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::a00:1 (NAT64) reach IPv4 hosts: judge the IPv4 address.
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
    )
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


async def check_base_url(url: str, allowed_hosts: Collection[str]) -> str:
    """The URL to store (trimmed, without a trailing slash), or BaseUrlRejected."""
    url = url.strip()
    if len(url) > MAX_BASE_URL_CHARS:
        raise BaseUrlRejected(f"base_url is longer than {MAX_BASE_URL_CHARS} characters")
    if any(not ("\x21" <= ch <= "\x7e") for ch in url):
        raise BaseUrlRejected("base_url may contain only printable ASCII characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BaseUrlRejected("base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise BaseUrlRejected("base_url must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise BaseUrlRejected(
            "base_url must not contain credentials (user:password@); set an API key"
        )
    if parts.query or parts.fragment:
        raise BaseUrlRejected("base_url must not contain a query string or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BaseUrlRejected("base_url has no host")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if host in allowed_hosts:
        return url.rstrip("/")
    if host in _METADATA_HOSTS:
        raise BaseUrlRejected(f"base_url host {host} is a cloud metadata service")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await _resolve(host, port)
        except (OSError, TimeoutError, UnicodeError):
            raise BaseUrlRejected(f"base_url host {host} does not resolve") from None
    if not addresses:
        raise BaseUrlRejected(f"base_url host {host} does not resolve")
    for address in addresses:
        if not is_public_address(address):
            raise BaseUrlRejected(
                f"base_url host {host} resolves to a non-public address ({address}); "
                "loopback, link-local, private and metadata addresses are not allowed "
                "unless the operator allow-lists the host"
            )
    return url.rstrip("/")
