"""Inputs that once answered a bare 500 (issue 7 item 9) get a 400 that says what to change, and
anything unexpected still answers the JSON error shape."""

from __future__ import annotations

import httpx
import pytest
from gateway_server import serve_gateway
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app

from .conftest import Backends, gateway_settings

LONE_SURROGATE = '"\\ud800"'  # as JSON writes it: a string no UTF-8 encoder accepts


def _json_with_surrogate(template: str) -> bytes:
    return template.replace("SURROGATE", LONE_SURROGATE).encode()


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/settings/llm/text", '{"provider": SURROGATE}', "provider"),
        ("/api/settings/llm/text", '{"provider": "openai", "model": SURROGATE}', "model"),
        ("/api/settings/llm/text", '{"provider": "openai", "base_url": SURROGATE}', "base_url"),
        ("/api/settings/llm/text", '{"provider": "openai", "options": {"k": SURROGATE}}',
         "options.k"),
        ("/api/settings/llm/text", '{"provider": "openai", "api_key": SURROGATE}', "api_key"),
        ("/api/settings/llm", '{"image": {"provider": "openai", "model": SURROGATE}}',
         "image.model"),
        ("/api/settings/llm/image/api-key", '{"api_key": SURROGATE}', "api_key"),
        ("/api/settings/llm/image/api-key", '{"api_key": "sk-x", "provider": SURROGATE}',
         "provider"),
    ],
)  # fmt: skip
async def test_a_lone_surrogate_in_a_settings_string_is_400(
    gateway: httpx.AsyncClient, backends: Backends, path: str, body: str, param: str
) -> None:
    response = await gateway.put(
        path, content=_json_with_surrogate(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert backends.settings.calls == []


async def test_an_api_key_the_store_would_refuse_is_400_without_the_key(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    for key in ["sk-with space-1234", "sk-é-1234", "sk-\x00-1234", "   "]:
        response = await gateway.put("/api/settings/llm/text/api-key", json={"api_key": key})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "api_key"
        assert key.strip() not in response.text or not key.strip()
    too_long = await gateway.put("/api/settings/llm/text/api-key", json={"api_key": "k" * 4097})
    assert too_long.status_code == 400
    assert backends.settings.calls == []
    # Surrounding whitespace is removed, as settings-svc does.
    padded = await gateway.put("/api/settings/llm/text/api-key", json={"api_key": " sk-ok-1234\n"})
    assert padded.status_code == 200
    assert [request.api_key for name, request, _ in backends.settings.calls] == ["sk-ok-1234"]


@pytest.mark.parametrize("version", [2**63, 10**30, -1])
async def test_a_version_beyond_int64_is_400(
    gateway: httpx.AsyncClient, backends: Backends, version: int
) -> None:
    response = await gateway.put(
        "/api/settings/llm/text", json={"provider": "openai", "version": version}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "version"
    assert backends.settings.calls == []


@pytest.mark.parametrize("if_match", ['"9223372036854775808"', "1" * 40, "²"])
async def test_an_if_match_beyond_int64_is_400(
    gateway: httpx.AsyncClient, backends: Backends, if_match: str
) -> None:
    response = await gateway.put(
        "/api/settings/llm/text",
        json={"provider": "openai"},
        headers={"if-match": if_match.encode()},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "If-Match"
    assert backends.settings.calls == []


async def test_the_largest_version_is_passed_on(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    response = await gateway.put(
        "/api/settings/llm/text",
        json={"provider": "openai"},
        headers={"if-match": '"9223372036854775807"'},
    )
    assert response.status_code == 409  # the stand-in's version is 0
    assert backends.settings.calls[-1][1].expected_version == 2**63 - 1


@pytest.mark.parametrize(
    "params",
    [
        {"from": "9" * 30},
        {"from": "99999999999999"},
        {"to": "10000000000000000000"},
        {"from": "9999-12-31T23:59:59-23:59"},
        {"from": "0001-01-01T00:00:00+23:59"},
        {"from": "²"},
    ],
)
async def test_usage_times_out_of_range_are_400(
    gateway: httpx.AsyncClient, backends: Backends, params: dict[str, str]
) -> None:
    response = await gateway.get("/api/usage", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == next(iter(params))
    assert backends.billing.usage_requests == []


async def test_the_end_of_the_calendar_is_a_valid_usage_time(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    response = await gateway.get("/api/usage", params={"to": "9999-12-31T23:59:59Z"})
    assert response.status_code == 200
    assert backends.billing.usage_requests[-1].to_unix == 253_402_300_799


async def test_an_answer_the_gateway_cannot_render_is_a_json_500(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    # A backend answering what this gateway does not know (a newer backend type) is a bug the
    # user cannot fix; they get the error shape and the request id, not "Internal Server Error".
    from grpc_stubs.settings.v1 import settings_pb2

    backends.settings.configs[("alice", 1)] = settings_pb2.BackendConfig(
        backend_type=99, provider="openai", version=1
    )
    response = await gateway.get("/api/settings/llm/text", headers={"x-request-id": "r-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "server_error"
    assert response.headers["x-request-id"] == "r-500"


class _FailingMiddleware:
    """Fails in the middle of the middleware stack, before any response has started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            raise RuntimeError("sk-secret-in-an-exception-1234")
        await self.app(scope, receive, send)


async def test_an_error_inside_a_middleware_is_a_json_500() -> None:
    app = create_app(gateway_settings())
    app.add_middleware(_FailingMiddleware)
    async with serve_gateway(gateway_settings(), app=app) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/healthz")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "sk-secret" not in response.text


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_405_names_every_method_of_the_path(gateway: httpx.AsyncClient, method: str) -> None:
    response = await gateway.request(method, "/api/settings/llm/text")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, PUT"
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_options_answers_405_with_the_full_allow(gateway: httpx.AsyncClient) -> None:
    settings = await gateway.options("/api/settings/llm")
    assert settings.status_code == 405
    assert settings.headers["allow"] == "GET, PUT"
    chat = await gateway.options("/api/text-proxy/v1/chat/completions")
    assert chat.headers["allow"] == "POST"


async def test_415_is_the_callers_error(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/api/text-proxy/v1/chat/completions", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_put_on_the_presets_is_405_naming_get(gateway: httpx.AsyncClient) -> None:
    # /presets is its own resource, not a backend type of /{backend_type}.
    response = await gateway.put("/api/settings/llm/presets", json={"provider": "openai"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["error"]["type"] == "invalid_request_error"
