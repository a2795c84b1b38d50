"""upstream.fetch_bytes, the one fetcher of user URLs: refused addresses before connecting,
redirects re-checked hop by hop, the body capped while read, one timeout, nothing sent that names
the platform or a user."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from image_server import ImageServer, serving_images

from upstream import FetchFailed, fetch_bytes

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    async with serving_images({"/a.png": PNG, "/big": b"x" * 200_000}) as s:
        yield s


def trust(server: ImageServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.ca_file)


async def test_an_allowed_host_is_fetched_without_cookies_or_credentials(
    server: ImageServer,
) -> None:
    fetched = await fetch_bytes(
        f"{server.base_url}/a.png", 1000, 5, allowed_hosts={"127.0.0.1"}, ssl_context=trust(server)
    )
    assert fetched.data == PNG
    headers = {k.lower() for k in server.requests[0]}
    assert not headers & {"cookie", "authorization", "x-api-key"}


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.png",
        "https://localhost/a.png",
        "https://[::1]/a.png",
        "https://169.254.169.254/",
        "https://2130706433/",
        "https://[::ffff:10.0.0.1]/",
        "http://example.com/a.png",
        "https://u:p@example.com/a.png",
    ],
)
async def test_refused_before_any_byte_is_read(url: str) -> None:
    with pytest.raises(FetchFailed) as caught:
        await fetch_bytes(url, 1000, 5)
    assert caught.value.kind == "not_allowed"


async def test_a_redirect_to_a_refused_address_is_refused(server: ImageServer) -> None:
    port = server.base_url.rsplit(":", 1)[1]
    with pytest.raises(FetchFailed) as caught:
        await fetch_bytes(
            f"{server.base_url}/redirect?to=https://localhost:{port}/a.png",
            1000,
            5,
            allowed_hosts={"127.0.0.1"},
            ssl_context=trust(server),
        )
    assert caught.value.kind == "not_allowed"
    assert len(server.requests) == 1  # the redirect target was never contacted


async def test_the_body_is_capped_while_read_and_the_fetch_times_out(server: ImageServer) -> None:
    with pytest.raises(FetchFailed) as caught:
        await fetch_bytes(
            f"{server.base_url}/big",
            100_000,
            5,
            allowed_hosts={"127.0.0.1"},
            ssl_context=trust(server),
        )
    assert caught.value.kind == "too_large"

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"\x89PNG")
        await asyncio.sleep(10)
        return response

    app = web.Application()
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.ca_file, server.ca_file.replace("cert.pem", "key.pem"))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        with pytest.raises(FetchFailed) as timed_out:
            await fetch_bytes(
                f"https://127.0.0.1:{port}/slow",
                1000,
                0.5,
                allowed_hosts={"127.0.0.1"},
                ssl_context=trust(server),
            )
        assert timed_out.value.kind == "timed_out"
    finally:
        await runner.cleanup()
