"""The platform's one SSRF-safe fetcher of user-supplied URLs (image URLs in chat messages).

`fetch_bytes` reads at most `max_bytes` from an https URL a user named:
- the URL is parsed once, by yarl (the parser aiohttp connects with): https only, no
  credentials, a host;
- the host is judged by `svc_common.addresses` where the connection is made: address literals
  before connecting, names by the connector's resolver, which hands the connector only the
  addresses it checked (the address is resolved and pinned; DNS rebinding cannot slip through);
- every redirect hop is a new URL judged the same way (at most `max_redirects`);
- the body is capped while it is read (a Content-Length over the cap is refused unread);
- one short timeout bounds the whole fetch; no cookies are kept, no credentials or platform
  headers are sent, and nothing is cached: each fetch has its own connection.
The caller sniffs the content type from the bytes; the server's Content-Type is not trusted.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Collection
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from svc_common.addresses import MAX_URL_CHARS, name_refusal, normalise_host
from upstream.transport import AddressRefused, GuardedResolver

__all__ = ["FetchFailed", "Fetched", "fetch_bytes"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"user-agent": "model-platform-image-fetcher/1", "accept": "image/*"}


class FetchFailed(Exception):
    """Why a URL was not fetched, in words a user can act on. `kind`: not_allowed | too_large |
    timed_out | failed."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes = field(repr=False)
    url: str  # where the bytes came from (after redirects)


class _PolicyResolver(AbstractResolver):
    """Allow-listed hosts resolve as they are; every other host through the GuardedResolver."""

    def __init__(self, inner: AbstractResolver, allowed_hosts: Collection[str]) -> None:
        self._inner = inner
        self._guarded = GuardedResolver(inner)
        self._allowed = allowed_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if normalise_host(host) in self._allowed:
            return await self._inner.resolve(host, port, family)
        return await self._guarded.resolve(host, port, family)

    async def close(self) -> None:
        await self._inner.close()


def _checked_url(raw: str | URL, allowed_hosts: Collection[str]) -> URL:
    text = str(raw)
    if len(text) > MAX_URL_CHARS:
        raise FetchFailed("not_allowed", f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(not ("\x21" <= ch <= "\x7e") for ch in text):
        raise FetchFailed("not_allowed", "the URL may contain only printable ASCII characters")
    try:
        url = raw if isinstance(raw, URL) else URL(text)
        host = url.raw_host
    except ValueError:
        raise FetchFailed("not_allowed", "the URL is not a valid URL") from None
    if url.scheme != "https":
        raise FetchFailed("not_allowed", "only https URLs are fetched")
    if url.raw_user is not None or url.raw_password is not None:
        raise FetchFailed("not_allowed", "the URL must not contain credentials (user:password@)")
    host = normalise_host(host or "")
    if not host:
        raise FetchFailed("not_allowed", "the URL has no host")
    if host not in allowed_hosts:
        refusal = name_refusal(host)
        if refusal is not None:
            raise FetchFailed("not_allowed", refusal)
    return url


def _refusal_in(err: BaseException) -> str | None:
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen.reason
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, AddressRefused):
            return os_error.reason
        seen = seen.__cause__ or seen.__context__
    return None


async def fetch_bytes(
    url: str,
    max_bytes: int,
    timeout_s: float,
    *,
    allowed_hosts: Collection[str] = (),
    max_redirects: int = 3,
    resolver: AbstractResolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Fetched:
    """The body of `url` (at most `max_bytes`), or FetchFailed. `allowed_hosts`: hosts that may
    resolve to non-public addresses (the operator's allow-list); `ssl_context`: a
    context trusting the operator's CAs (None: the system's)."""
    current = _checked_url(url, allowed_hosts)
    connector = aiohttp.TCPConnector(
        resolver=_PolicyResolver(resolver or aiohttp.DefaultResolver(), allowed_hosts),
        force_close=True,
        limit=1,
        ssl=ssl_context if ssl_context is not None else True,
    )
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=_HEADERS,
            trust_env=False,  # no proxy or netrc credentials from the environment
        ) as session:
            for _ in range(max_redirects + 1):
                async with session.get(current, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("location", "")
                        if not location:
                            raise FetchFailed("failed", "the server redirected nowhere")
                        current = _checked_url(current.join(URL(location)), allowed_hosts)
                        continue
                    if response.status != 200:
                        raise FetchFailed("failed", f"the server answered HTTP {response.status}")
                    if (response.content_length or 0) > max_bytes:
                        raise FetchFailed(
                            "too_large", f"the image is larger than {max_bytes} bytes"
                        )
                    body = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchFailed(
                                "too_large", f"the image is larger than {max_bytes} bytes"
                            )
                    return Fetched(bytes(body), str(current))
            raise FetchFailed("failed", f"more than {max_redirects} redirects")
    except FetchFailed:
        raise
    except TimeoutError:
        raise FetchFailed("timed_out", f"the image was not fetched within {timeout_s:g}s") from None
    except (aiohttp.ClientError, OSError, ValueError) as err:
        refusal = _refusal_in(err)
        if refusal is not None:
            raise FetchFailed("not_allowed", refusal) from None
        # Never the error's own text: it may name internal addresses.
        raise FetchFailed("failed", "the image could not be fetched") from None
