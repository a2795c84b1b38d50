"""The transport a model service calls providers with: redirects are never followed, and for a
user's base URL every address is checked where the connection is made (issue 7, items 6-8)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from svc_common.addresses import IPAddress, check_url
from upstream import Failure, ProviderError, ProviderTransport

TIMEOUT = aiohttp.ClientTimeout(total=10)
PUBLIC = "93.184.215.14"


class Recorder:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.hits: list[str] = []
        self._handler = handler
        self.port = 0

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(f"{request.method} {request.path}")
        return await self._handler(request)

    async def __aenter__(self) -> Recorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def models(request: web.Request) -> web.StreamResponse:
    if request.path.endswith("/stream"):
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"id": "secret-model"}\n\n')
        return response
    return web.json_response({"data": [{"id": "secret-model"}]})


@pytest.fixture
async def target() -> AsyncIterator[Recorder]:
    """Where a redirect or a rebound name would lead: it must never be reached."""
    async with Recorder(models) as server:
        yield server


class Answering(AbstractResolver):
    """What DNS answers for every name at connect time (the seam a rebinding attack controls)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=self.address,
                port=port,
                family=socket.AF_INET6 if ":" in self.address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


def transport(base_url: str, **kwargs: object) -> ProviderTransport:
    options: dict[str, object] = {"check_addresses": True, **kwargs}
    return ProviderTransport(base_url, {}, TIMEOUT, **options)  # type: ignore[arg-type]


async def blocked(call: Awaitable[object]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call
    assert caught.value.failure is Failure.BLOCKED
    assert not caught.value.retryable
    return caught.value


async def read_stream(http: ProviderTransport, path: str) -> bytes:
    async with http.stream("POST", path, {"stream": True}) as response:
        return await response.read()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("user_base_url", [True, False])
async def test_a_redirect_is_an_error_and_its_target_is_never_reached(
    target: Recorder, status: int, user_base_url: bool
) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        location = f"http://localhost:{target.port}{request.path}"
        return web.Response(status=status, headers={"location": location})

    async with Recorder(redirect) as allowed:
        http = transport(
            f"http://127.0.0.1:{allowed.port}/v1",
            check_addresses=user_base_url,
            allowed_hosts=["127.0.0.1"],
        )
        try:
            for call in (
                http.get("/models"),
                http.post("/chat/completions", {"model": "m"}),
                read_stream(http, "/chat/completions/stream"),
                http.fetch("POST", "/images/upload", data=b"raw"),
            ):
                err = await blocked(call)
                assert f"redirect (HTTP {status}), which is not followed" in err.detail
        finally:
            await http.aclose()
    assert len(allowed.hits) == 4
    assert target.hits == []


async def test_a_name_public_when_saved_and_loopback_at_connect_is_refused(
    target: Recorder,
) -> None:
    url = f"http://rebind.example:{target.port}/v1"

    async def public_at_save(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(PUBLIC)]

    assert await check_url(url, [], resolve=public_at_save) == url

    for rebound in ("127.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "::7f00:1"):
        dns = Answering(rebound)
        http = transport(url, resolver=dns)
        try:
            err = await blocked(http.get("/models"))
            assert f"non-public address ({ipaddress.ip_address(rebound)})" in err.detail
            await blocked(read_stream(http, "/chat/completions/stream"))
            await blocked(http.fetch("GET", "/view?filename=a.png"))
        finally:
            await http.aclose()
        assert dns.asked == ["rebind.example", "rebind.example", "rebind.example"]
    assert target.hits == []


async def test_the_connection_goes_to_the_address_the_resolver_answered(
    target: Recorder,
) -> None:
    # The same seam, allowed: the request reaches the answered address (so the refusal above
    # is the check, not a name that could not be reached anyway).
    dns = Answering("127.0.0.1")
    http = transport(
        f"http://rebind.example:{target.port}/v1", resolver=dns, allowed_hosts=["rebind.example"]
    )
    try:
        assert await http.get("/models") == {"data": [{"id": "secret-model"}]}
    finally:
        await http.aclose()
    assert target.hits == ["GET /v1/models"]


async def test_an_allow_list_change_applies_to_urls_saved_before_it(target: Recorder) -> None:
    url = f"http://127.0.0.1:{target.port}"
    assert await check_url(url, ["127.0.0.1"]) == url  # saved while 127.0.0.1 was allowed
    http = transport(url, allowed_hosts=[])  # the operator has since removed it
    try:
        err = await blocked(http.get("/models"))
        assert err.param == "base_url"
        assert "not allowed at connect time" in err.detail
    finally:
        await http.aclose()
    assert target.hits == []


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",
        "[::7f00:1]",
        "[2002:7f00:1::]",
        "[2002:a9fe:a9fe::]",
        "[64:ff9b:1::a9fe:a9fe]",
        "[64:ff9b::7f00:1]",
        "[::ffff:127.0.0.1]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
        "127.0.0.1",
        "169.254.169.254",
        "2130706433",  # 127.0.0.1, read by the system resolver
        "0177.0.0.1",
        "127.1",
        "localhost",
        "metadata.google.internal",
    ],
)
async def test_every_spelling_of_a_non_public_address_is_refused_at_connect(
    target: Recorder, host: str
) -> None:
    http = transport(f"http://{host}:{target.port}/v1")
    try:
        await blocked(http.post("/chat/completions", {"model": "m"}))
        await blocked(read_stream(http, "/chat/completions/stream"))
    finally:
        await http.aclose()
    assert target.hits == []


async def test_operator_base_urls_are_not_address_checked(target: Recorder) -> None:
    http = transport(f"http://127.0.0.1:{target.port}/v1", check_addresses=False)
    try:
        assert await http.get("/models") == {"data": [{"id": "secret-model"}]}
        assert await read_stream(http, "/stream") == b'data: {"id": "secret-model"}\n\n'
    finally:
        await http.aclose()
    assert target.hits == ["GET /v1/models", "POST /v1/stream"]
