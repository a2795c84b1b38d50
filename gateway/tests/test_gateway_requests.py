"""What the gateway refuses before any backend is called, and how it says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from .conftest import Backends

CHAT = "/api/text-proxy/v1/chat/completions"
USER_HI = [{"role": "user", "content": "Hi"}]
MIB = 1024 * 1024


async def raw_request(url: str, head: bytes) -> tuple[bytes, bytes]:
    """Send a request head as it is; the answer's status line and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, _, headers = response_head.partition(b"\r\n")
        length = next(
            int(line.partition(b":")[2])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return status_line, await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()


async def test_declared_body_over_the_limit_is_413_before_it_is_sent(
    start_gateway, backends: Backends, token: str
) -> None:
    async with start_gateway(backends.target) as url:
        head = (
            f"POST {CHAT} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {20 * MIB}\r\n\r\n"
        ).encode()
        status_line, raw_body = await raw_request(url, head)  # not one byte of the body sent
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    body = orjson.loads(raw_body)
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["message"] == (
        f"the request body is larger than the limit of {4 * MIB} bytes"
    )
    assert backends.text.requests == []


async def test_20_mb_body_is_413(gateway: httpx.AsyncClient, backends: Backends) -> None:
    body = orjson.dumps({"messages": [{"role": "user", "content": "x" * (20 * MIB)}]})
    try:
        response = await gateway.post(
            CHAT, content=body, headers={"content-type": "application/json"}
        )
    except httpx.WriteError:
        pytest.skip("the server closed the connection before the client read the 413")
    assert response.status_code == 413
    assert backends.text.requests == []


async def test_chunked_body_over_the_limit_is_413(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"x" * MIB
        yield b'"}]}'

    try:
        response = await gateway.post(
            CHAT, content=chunks(), headers={"content-type": "application/json"}
        )
    except httpx.WriteError:
        pytest.skip("the server closed the connection before the client read the 413")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert backends.text.requests == []


async def test_chunked_body_under_the_limit_is_served(gateway: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"messages": '
        yield orjson.dumps(USER_HI)
        yield b"}"

    response = await gateway.post(
        CHAT, content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200


async def test_the_limit_is_configurable(start_gateway, backends: Backends, token: str) -> None:
    async with (
        start_gateway(backends.target, max_body_bytes=100) as url,
        httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as client,
    ):
        small = await client.post(CHAT, json={"messages": USER_HI})
        large = await client.post(CHAT, json={"messages": [{"role": "user", "content": "x" * 100}]})
    assert small.status_code == 200
    assert large.status_code == 413


async def test_malformed_json_is_400(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        CHAT, content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "the request body is not valid JSON",
            "type": "invalid_request_error",
            "code": "invalid_json",
            "param": None,
        }
    }


async def test_wrong_content_type_is_415(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        CHAT, content=b"messages=hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "must be a JSON object"),
        ({}, "messages", "missing required parameter 'messages'"),
        ({"messages": "hi"}, "messages", "expected an array"),
        ({"messages": []}, "messages", "must not be empty"),
        ({"messages": ["hi"]}, "messages[0]", "expected an object"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing required"),
        # Issue 9: tool messages are taken, with the tool_call_id they answer.
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "supported roles"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing required",
        ),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role", "expected a string"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "or an array"),
        ({"messages": USER_HI, "model": 4}, "model", "expected a string"),
        ({"messages": USER_HI, "temperature": "0.5"}, "temperature", "expected a number"),
        ({"messages": USER_HI, "temperature": True}, "temperature", "expected a number"),
        ({"messages": USER_HI, "max_tokens": 1.5}, "max_tokens", "expected an integer"),
        ({"messages": USER_HI, "max_tokens": 0}, "max_tokens", "between 1 and"),
        ({"messages": USER_HI, "stop": 3}, "stop", "a string or an array of strings"),
        ({"messages": USER_HI, "stop": ["a", 1]}, "stop[1]", "expected a string"),
        ({"messages": USER_HI, "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"messages": USER_HI, "stream": "yes"}, "stream", "expected a boolean"),
        ({"messages": USER_HI, "n": 2}, "n", "only n=1"),
        (
            {"messages": USER_HI, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when 'stream' is enabled",
        ),
        (
            {"messages": USER_HI, "stream": True, "stream_options": {"include_usage": "y"}},
            "stream_options.include_usage",
            "expected a boolean",
        ),
    ],
)  # fmt: skip
async def test_invalid_bodies_are_400_naming_the_field(
    gateway: httpx.AsyncClient, backends: Backends, body: object, param: str | None, message: str
) -> None:
    response = await gateway.post(CHAT, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert message in error["message"]
    assert backends.text.requests == []


async def test_image_part_points_to_the_multimodal_proxy(gateway: httpx.AsyncClient) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    response = await gateway.post(CHAT, json={"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[0].content[1].type"
    assert "/api/multimodal-proxy" in error["message"]


async def test_request_id_is_echoed_or_made(gateway: httpx.AsyncClient, backends: Backends) -> None:
    given = await gateway.get("/healthz", headers={"x-request-id": "abc-DEF_123"})
    made = await gateway.get("/healthz")
    assert given.headers["x-request-id"] == "abc-DEF_123"
    assert len(made.headers["x-request-id"]) == 32
    # Errors carry it too.
    failed = await gateway.post(CHAT, json={}, headers={"x-request-id": "r-1"})
    assert failed.headers["x-request-id"] == "r-1"


@pytest.mark.parametrize(
    "request_id", ["uuid#3", "has space", "semi;colon", "a" * 128, "{~!}", "abc-DEF_123"]
)
async def test_any_printable_request_id_is_passed_on_and_echoed(
    gateway: httpx.AsyncClient, backends: Backends, request_id: str
) -> None:
    # A correlation id only (issue 7): proxies in front send ids like "uuid#3".
    response = await gateway.post(
        CHAT, json={"messages": USER_HI}, headers={"x-request-id": request_id}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    request, who = backends.text.requests[-1]
    assert request.request_id == who.request_id == request_id


@pytest.mark.parametrize("request_id", ["a" * 129, "é", "tab\there"])
async def test_invalid_request_id_is_400(
    gateway: httpx.AsyncClient, backends: Backends, request_id: str
) -> None:
    response = await gateway.post(
        CHAT, json={"messages": USER_HI}, headers={"x-request-id": request_id.encode()}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-request-id"
    assert backends.text.requests == []


async def test_unknown_route_and_method_in_the_error_shape(gateway: httpx.AsyncClient) -> None:
    missing = await gateway.get("/api/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "message": "no route for GET /api/nope",
        "type": "invalid_request_error",
        "code": None,
        "param": None,
    }
    wrong_method = await gateway.get(CHAT)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["message"] == f"GET is not allowed on {CHAT}"
