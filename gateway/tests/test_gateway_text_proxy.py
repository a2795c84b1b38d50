"""The text proxy: OpenAI's chat completion shapes out, text.v1 requests in, errors as OpenAI's."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from svc_common.errors import InsufficientCredits, NotFound, ServiceError

CHAT = "/api/text-proxy/v1/chat/completions"
HELLO = {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]}


def sse_events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n")
    events = body[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [event[len(b"data: ") :] for event in events]


async def test_completion_has_openai_shape_exactly(gateway: httpx.AsyncClient, backends) -> None:
    backends.text.script.balance_micros = 4_000_000
    response = await gateway.post(CHAT, json=HELLO, headers={"x-request-id": "req-123_abc"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-123_abc"
    assert response.headers["x-credits-remaining"] == "4000000"
    assert response.json() == {
        "id": "chatcmpl-gen-1",  # text-svc's id, not the client's x-request-id
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        "system_fingerprint": None,
    }


async def test_request_becomes_generate_request_with_caller_identity(
    gateway: httpx.AsyncClient, backends
) -> None:
    body = {
        "model": "gpt-test",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": "ok", "name": "bot"},
        ],
        "temperature": 0.5,
        "top_p": 1,
        "max_completion_tokens": 64,
        "stop": "END",
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": -0.2,
        "n": 1,
        "user": "ignored: unknown and OpenAI-only fields are ignored",
        "tools": None,
    }
    response = await gateway.post(CHAT, json=body)
    assert response.status_code == 200, response.text

    request, who = backends.text.requests[-1]
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert request.request_id == request_id == who.request_id
    assert (who.service, who.user_id, who.is_member) == ("gateway", "alice", True)
    assert [(m.role, m.content, m.name) for m in request.messages] == [
        ("system", "Be brief.", ""),
        ("user", "a\nb", ""),
        ("assistant", "ok", "bot"),
    ]
    assert request.model == "gpt-test"
    assert request.temperature == 0.5
    assert request.top_p == 1.0
    assert request.max_tokens == 64
    assert list(request.stop) == ["END"]
    assert request.seed == 7
    assert request.presence_penalty == pytest.approx(0.1)
    assert request.frequency_penalty == pytest.approx(-0.2)
    assert response.headers.get("x-credits-remaining") is None  # BYOK-like: balance -1


async def test_absent_options_stay_unset(gateway: httpx.AsyncClient, backends) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": None, "max_tokens": 5}
    assert (await gateway.post(CHAT, json=body)).status_code == 200
    request, _ = backends.text.requests[-1]
    assert request.model == ""
    assert not request.HasField("temperature")
    assert not request.HasField("top_p")
    assert request.max_tokens == 5


async def test_stream_is_openai_sse(gateway: httpx.AsyncClient, backends) -> None:
    backends.text.script.balance_micros = 123
    body = {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    response = await gateway.post(CHAT, json=body, headers={"x-request-id": "s1"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-credits-remaining"] == "123"
    events = sse_events(response.content)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    envelope = {
        "id": "chatcmpl-gen-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "system_fingerprint": None,
    }

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**envelope, "choices": [choice], "usage": None}

    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": " there!"}),
        chunk({}, "stop"),
        {
            **envelope,
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        },
    ]
    # Key order as OpenAI sends it.
    assert events[1].startswith(
        b'{"id":"chatcmpl-gen-1","object":"chat.completion.chunk","created"'
    )


async def test_stream_without_usage_has_no_usage_keys(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(CHAT, json={**HELLO, "stream": True})
    events = sse_events(response.content)
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]


async def test_error_before_stream_is_a_plain_http_error(
    gateway: httpx.AsyncClient, backends
) -> None:
    backends.text.script.error = InsufficientCredits(
        "your balance of 0.10 credits does not cover this request (up to 0.50)"
    )
    response = await gateway.post(CHAT, json={**HELLO, "stream": True})

    assert response.status_code == 402
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "your balance of 0.10 credits does not cover this request (up to 0.50)",
            "type": "insufficient_quota",
            "code": "insufficient_credits",
            "param": None,
        }
    }


async def test_error_mid_stream_is_one_error_event(gateway: httpx.AsyncClient, backends) -> None:
    backends.text.script.error_after_deltas = 2
    response = await gateway.post(CHAT, json={**HELLO, "stream": True})

    assert response.status_code == 200
    events = sse_events(response.content)
    assert b"[DONE]" not in events
    assert orjson.loads(events[-1]) == {
        "error": {
            "message": "the provider failed mid-stream",
            "type": "server_error",
            "code": "upstream_error",
            "param": None,
        }
    }
    assert [orjson.loads(e)["choices"][0]["delta"] for e in events[1:-1]] == [
        {"content": "Hel"},
        {"content": "lo"},
    ]


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (NotFound("unknown model 'x'", param="model"), 404, "model_not_found", None),
        (
            ServiceError("the provider rejected the key", reason="PROVIDER_AUTH_FAILED"),
            401,
            "provider_auth_failed",
            None,
        ),
        (
            ServiceError("slow down", reason="UPSTREAM_RATE_LIMITED", retry_after=2.5),
            429,
            "rate_limit_exceeded",
            "3",
        ),
        (
            ServiceError("provider timed out", reason="UPSTREAM_TIMEOUT"),
            504,
            "upstream_timeout",
            None,
        ),
    ],
)
async def test_backend_errors_map_to_http(
    gateway: httpx.AsyncClient, backends, error, status, code, retry_after
) -> None:
    backends.text.script.error = error
    response = await gateway.post(CHAT, json=HELLO)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == error.message
    assert response.headers.get("retry-after") == retry_after


async def test_unexpected_backend_failure_hides_details(
    gateway: httpx.AsyncClient, backends
) -> None:
    backends.text.script.error = ValueError("secret internal detail")  # type: ignore[assignment]
    response = await gateway.post(CHAT, json=HELLO)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "text-svc failed to handle the request"
    assert "secret" not in response.text


async def test_client_disconnect_mid_stream_cancels_the_backend_call(
    gateway: httpx.AsyncClient, backends
) -> None:
    backends.text.script.hang_after_deltas = 1
    async with gateway.stream("POST", CHAT, json={**HELLO, "stream": True}) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        while not (await anext(lines)).startswith('data: {"id"'):
            pass
        await asyncio.wait_for(backends.text.waiting.wait(), 5)
    # Leaving the block closed the connection mid-stream.
    await asyncio.wait_for(backends.text.cancelled.wait(), 5)


async def test_stream_is_not_cancelled_after_its_last_event(
    gateway: httpx.AsyncClient, backends
) -> None:
    # text-svc settles the request (publishes the usage event) after its last event: the
    # gateway must let the call complete, not cancel it once [DONE] has gone out.
    release = asyncio.Event()
    backends.text.script.hold_after_finish = release
    async with gateway.stream("POST", CHAT, json={**HELLO, "stream": True}) as response:
        lines = response.aiter_lines()
        while (await anext(lines)) != "data: [DONE]":
            pass
        release.set()
        async for _ in lines:
            pass
    await asyncio.wait_for(backends.text.completed_after_finish.wait(), 5)
    assert not backends.text.cancelled.is_set()


async def test_client_disconnect_before_the_answer_cancels_the_backend_call(
    gateway: httpx.AsyncClient, backends
) -> None:
    backends.text.script.hang = True
    request = asyncio.create_task(gateway.post(CHAT, json=HELLO))
    await asyncio.wait_for(backends.text.waiting.wait(), 5)
    request.cancel()
    await asyncio.wait_for(backends.text.cancelled.wait(), 5)
    with pytest.raises(asyncio.CancelledError):
        await request


async def test_models_in_openai_list_shape(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/text-proxy/v1/models")
    assert response.status_code == 200
    # Issue 9: `created` is a real time (the gateway's start when the provider gives none).
    created = response.json()["data"][0]["created"]
    assert created > 1_600_000_000
    assert response.json() == {
        "object": "list",
        "data": [
            {"id": "gpt-test", "object": "model", "created": created, "owned_by": "openai"},
            {"id": "gpt-test-mini", "object": "model", "created": created, "owned_by": "openai"},
        ],
    }


@pytest.mark.parametrize("path", ["/api/text-proxy/status", "/api/text-proxy/v1/status"])
async def test_status(gateway: httpx.AsyncClient, path: str) -> None:
    response = await gateway.get(path)
    assert response.json() == {
        "ok": True,
        "provider": "openai",
        "model": "gpt-test",
        "detail": "",
        "latency_ms": 42,
    }


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/status", "/v1/status"])
async def test_llm_proxy_is_an_alias(gateway: httpx.AsyncClient, path: str) -> None:
    if path.endswith("completions"):
        response = await gateway.post("/api/llm-proxy" + path, json=HELLO)
    else:
        response = await gateway.get("/api/llm-proxy" + path)
    assert response.status_code == 200


async def test_unconfigured_backend_is_503(start_gateway, token: str) -> None:
    async with start_gateway() as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(CHAT, json=HELLO, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "text-svc is not configured on this gateway"


async def test_unreachable_backend_is_503_without_addresses(start_gateway, token: str) -> None:
    async with (
        start_gateway("127.0.0.1:9", backend_deadline_s=2, upstream_deadline_s=2) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post(CHAT, json=HELLO, headers={"authorization": f"Bearer {token}"})
    assert response.status_code in (503, 504)
    assert "127.0.0.1" not in response.text
    assert response.json()["error"]["message"].startswith("text-svc ")


async def test_official_openai_sdk(start_gateway, backends, token: str) -> None:
    """The openai SDK reads our shapes, and raises the right exceptions on our errors."""
    import openai

    async with start_gateway(backends.target) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/api/text-proxy/v1", api_key=token)
        async with client:
            completion = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "Hi"}]
            )
            assert completion.choices[0].message.content == "Hello there!"
            assert completion.usage is not None and completion.usage.total_tokens == 14

            stream = await client.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [chunk async for chunk in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "Hello there!"
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3

            models = await client.models.list()
            assert [m.id for m in models.data] == ["gpt-test", "gpt-test-mini"]

            backends.text.script.error_after_deltas = 1
            stream = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            with pytest.raises(openai.APIError, match="the provider failed mid-stream"):
                async for _ in stream:
                    pass

            backends.text.script.error = InsufficientCredits("not enough credits")
            with pytest.raises(openai.APIStatusError) as excinfo:
                await client.chat.completions.create(
                    model="gpt-test",
                    messages=[{"role": "user", "content": "Hi"}],
                    stream=True,
                )
            assert excinfo.value.status_code == 402
            assert excinfo.value.code == "insufficient_credits"

        bad = openai.AsyncOpenAI(base_url=f"{url}/api/text-proxy/v1", api_key="nope")
        async with bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()
