"""The request head is bounded by the gateway's server itself (issue 7 item 10): an oversized
header or too many headers is answered 431 and the connection closed, before the rest is read."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from .conftest import Backends

MIB = 1024 * 1024


async def _send_until_answered(
    url: str, head: bytes, filler: bytes, total: int
) -> tuple[int, bytes]:
    """Sends `head`, then `filler` repeatedly up to `total` bytes, and stops as soon as the server
    has answered; the bytes sent, and the whole answer (read to the server's close)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = asyncio.create_task(reader.read())
    sent = 0
    try:
        writer.write(head)
        while sent < total and not answer.done():
            writer.write(filler)
            await writer.drain()
            sent += len(filler)
        return sent, await asyncio.wait_for(answer, 10)
    except ConnectionError:
        return sent, await asyncio.wait_for(answer, 10)
    finally:
        answer.cancel()
        writer.close()


def _status_and_error(answer: bytes) -> tuple[bytes, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, _, headers = head.partition(b"\r\n")
    assert b"content-type: application/json" in headers.lower()
    assert b"connection: close" in headers.lower()
    return status_line, orjson.loads(body)["error"]


async def test_a_64_mib_header_is_refused_before_it_is_read(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    total = 64 * MIB
    sent, answer = await _send_until_answered(
        str(gateway.base_url),
        b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-padding: ",
        b"a" * 65536,
        total,
    )
    status_line, error = _status_and_error(answer)
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert error["code"] == "request_header_too_large"
    assert error["type"] == "invalid_request_error"
    assert "32768 bytes" in error["message"]
    # The answer came while most of the header was still unsent: the server stopped reading
    # (and holding) it at the limit, rather than buffering 64 MiB first.
    assert sent < total // 4


async def test_a_long_request_line_is_refused_too(gateway: httpx.AsyncClient) -> None:
    sent, answer = await _send_until_answered(
        str(gateway.base_url), b"GET /healthz?q=", b"a" * 65536, 32 * MIB
    )
    status_line, _ = _status_and_error(answer)
    assert status_line.startswith(b"HTTP/1.1 431")
    assert sent < 8 * MIB


async def test_more_than_100_headers_are_refused(gateway: httpx.AsyncClient) -> None:
    many = b"".join(b"x-h%d: 1\r\n" % i for i in range(101))
    _, answer = await _send_until_answered(
        str(gateway.base_url), b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n" + many, b"\r\n", 2
    )
    status_line, error = _status_and_error(answer)
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert "more than 100 headers" in error["message"]


async def test_headers_within_the_limits_are_served(gateway: httpx.AsyncClient) -> None:
    headers = {f"x-h{i}": "v" * 200 for i in range(90)}  # ~20 KiB in 90 headers (+ httpx's)
    response = await gateway.get("/healthz", headers=headers)
    assert response.status_code == 200
    # Keep-alive: the next request on the same connection is counted afresh.
    again = await gateway.get("/healthz", headers=headers)
    assert again.status_code == 200


async def test_the_limits_are_configurable(start_gateway) -> None:
    async with start_gateway(max_header_bytes=4096, max_headers=20) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz", headers={"x-a": "a" * 2000})).status_code == 200
            many = {f"x-h{i}": "1" for i in range(25)}
        _, answer = await _send_until_answered(
            url, b"GET /healthz HTTP/1.1\r\nhost: g\r\nx-a: ", b"a" * 1024, 64 * 1024
        )
        assert answer.startswith(b"HTTP/1.1 431")
        async with httpx.AsyncClient(base_url=url) as client:
            try:
                response = await client.get("/healthz", headers=many)
                status = response.status_code
            except httpx.RemoteProtocolError:
                status = 0
        assert status == 431


async def test_a_request_the_parser_refuses_is_answered_in_the_error_shape(
    gateway: httpx.AsyncClient,
) -> None:
    _, answer = await _send_until_answered(
        str(gateway.base_url), b"GET /healthz HTTP/1.1\r\nhost: g\r\nbad header\r\n\r\n", b"", 0
    )
    status_line, error = _status_and_error(answer)
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert error["code"] == "invalid_http"
