"""One HTTP transport per provider endpoint: JSON calls and streams on one aiohttp session.

Redirects are never followed: a 3xx is a ProviderError, so a server on an allowed address cannot
send a user's chat body (or fetch a model list) somewhere the platform would not connect to.

For a base URL a user supplied, the address rule of `svc_common.addresses` is enforced where the
connection is made, not before it: the connector's resolver resolves the host, refuses it unless
every address is public, and hands the connector only the addresses it checked (so a DNS answer
that changes between a check and the connect, DNS rebinding, cannot slip through). An address
literal never reaches a resolver, so it is judged when the transport is built. Hosts the operator
allow-listed, and base URLs the operator configured, are not checked.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from svc_common.addresses import address_refusal, name_refusal, normalise_host
from upstream.failures import (
    Failure,
    ProviderError,
    error_message,
    redirect_error,
    status_error,
    transport_error,
)

_JSON = {"content-type": "application/json"}


class AddressRefused(OSError):
    """A host resolved to an address the platform does not connect to. An OSError, so that the
    connector reports it as a failed connection; the transport turns it into Failure.BLOCKED."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then returns the answer only if every address in it is public."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        addresses = []
        for result in results:
            try:
                addresses.append(ipaddress.ip_address(result["host"]))
            except ValueError:
                reason = f"host {host} resolved to something that is not an address"
                raise AddressRefused(reason) from None
        if not addresses:
            raise AddressRefused(f"host {host} does not resolve")
        refusal = address_refusal(host, addresses)
        if refusal is not None:
            raise AddressRefused(refusal)
        return results

    async def close(self) -> None:
        await self._inner.close()


def _blocked(reason: str) -> ProviderError:
    return ProviderError(
        Failure.BLOCKED, f"the base URL is not allowed at connect time: {reason}", param="base_url"
    )


def _refusal_in(err: BaseException) -> str | None:
    """The AddressRefused reason anywhere in an aiohttp error's causes."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, AddressRefused):
            return seen.reason
        os_error = getattr(seen, "os_error", None)  # aiohttp's ClientConnectorError keeps it
        if isinstance(os_error, AddressRefused):
            return os_error.reason
        seen = seen.__cause__ or seen.__context__
    return None


def _failure(err: Exception, *, mid_stream: bool = False) -> ProviderError:
    refusal = _refusal_in(err)
    if refusal is not None:
        return _blocked(refusal)
    return transport_error(err, mid_stream=mid_stream)


class ProviderTransport:
    """One provider endpoint's connection pool. `check_addresses`: the base URL came from a user,
    so every address connected to must be public unless its host is in `allowed_hosts`."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        *,
        check_addresses: bool,
        allowed_hosts: Collection[str] = (),
        resolver: AbstractResolver | None = None,
        limit: int = 512,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # The host exactly as the connector will see it (yarl's parse, not another parser's).
        host = normalise_host(URL(self.base_url).raw_host or "")
        self._refusal: str | None = None
        guarded = check_addresses and host not in allowed_hosts
        if guarded:
            self._refusal = name_refusal(host) if host else "the base URL has no host"
        inner = resolver or aiohttp.DefaultResolver()
        self._resolver = GuardedResolver(inner) if guarded else inner
        self.session = aiohttp.ClientSession(
            headers=dict(headers),
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=limit, resolver=self._resolver),
        )

    def _url(self, path: str) -> str:
        if self._refusal is not None:
            raise _blocked(self._refusal)
        return self.base_url + path

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self.call("POST", path, body)

    async def get(self, path: str) -> Any:
        return await self.call("GET", path, None)

    async def call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """A whole JSON answer; raises ProviderError for anything else."""
        url = self._url(path)
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self.session.request(
                method, url, data=data, headers=_JSON if data else None, allow_redirects=False
            ) as response:
                raw = await response.read()
                _check_status(response, raw)
                return orjson.loads(raw)
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as err:
            raise _failure(err) from None

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, Mapping[str, str]]:
        """A whole answer of any kind (image bytes, a multipart upload's answer) and its headers;
        `data` is what aiohttp sends (bytes, a FormData). Raises ProviderError for anything but
        a success status."""
        url = self._url(path)
        try:
            async with self.session.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                _check_status(response, raw)
                return raw, response.headers
        except (TimeoutError, aiohttp.ClientError) as err:
            raise _failure(err) from None

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, path: str, body: dict[str, Any]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response with a success status whose body is still to be read. Transport failures
        while it is read become ProviderErrors; leaving early (an error, cancellation, the
        caller closing its generator) drops the connection so the provider stops generating."""
        url = self._url(path)
        try:
            response = await self.session.request(
                method, url, data=orjson.dumps(body), headers=_JSON, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as err:
            raise _failure(err) from None
        done = False
        try:
            if response.status >= 300:
                try:
                    raw = await response.read()
                except (TimeoutError, aiohttp.ClientError):
                    raw = b""
                _check_status(response, raw)
            try:
                yield response
            except (TimeoutError, aiohttp.ClientError) as err:
                raise _failure(err, mid_stream=True) from None
            done = True
        finally:
            if done:
                response.release()  # back to the pool only if the body was read to its end
            else:
                response.close()

    async def aclose(self) -> None:
        await self.session.close()
        await self._resolver.close()


def _check_status(response: aiohttp.ClientResponse, raw: bytes) -> None:
    if response.status >= 400:
        raise status_error(response.status, response.headers, error_message(raw))
    if response.status >= 300:
        raise redirect_error(response.status)
