"""Settings routes: three configs, optimistic concurrency, write-only keys, the legacy body."""

from __future__ import annotations

import httpx
import pytest

from grpc_stubs.common.v1 import common_pb2

from .conftest import Backends

KEY = "sk-test-abcdefghijklmnop1234"


def calls(backends: Backends, method: str) -> list:
    return [request for name, request, _ in backends.settings.calls if name == method]


async def test_get_all_three_configs(gateway: httpx.AsyncClient, backends: Backends) -> None:
    response = await gateway.get("/api/settings/llm")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["text", "multimodal", "image"]
    assert body["image"] == {
        "backend_type": "image",
        "provider": "openai",
        "model": "gpt-test",
        "temperature": None,
        "mode": None,
        "options": {},
        "base_url": "",
        "version": 0,
        "api_key": {"is_set": False, "hint": "", "fingerprint": "", "provider": ""},
        "updated_at": None,
    }
    _, _, who = backends.settings.calls[-1]
    assert (who.service, who.user_id, who.is_member) == ("gateway", "alice", True)


async def test_put_then_get_with_etag(gateway: httpx.AsyncClient, backends: Backends) -> None:
    body = {
        "provider": "anthropic",
        "model": "claude-test",
        "temperature": 0.3,
        "mode": "byok",
        "options": {"top_k": "5"},
        "api_key": KEY,
    }
    put = await gateway.put("/api/settings/llm/multimodal", json=body)
    assert put.status_code == 200, put.text
    assert put.headers["etag"] == '"1"'
    saved = put.json()
    assert KEY not in put.text
    assert saved["api_key"] == {
        "is_set": True,
        "hint": "…1234",
        "fingerprint": "0123456789ab",
        "provider": "anthropic",
    }
    assert (saved["provider"], saved["model"], saved["temperature"], saved["mode"]) == (
        "anthropic",
        "claude-test",
        0.3,
        "byok",
    )
    assert saved["updated_at"] == "2023-11-14T22:13:20Z"

    request = calls(backends, "PutConfig")[-1]
    assert request.expected_version == -1
    assert request.config.backend_type == common_pb2.BACKEND_TYPE_MULTIMODAL
    assert request.config.mode == common_pb2.MODE_BYOK
    assert dict(request.config.options) == {"top_k": "5"}
    key_request = calls(backends, "SetApiKey")[-1]
    assert (key_request.api_key, key_request.provider) == (KEY, "anthropic")

    got = await gateway.get("/api/settings/llm/multimodal")
    assert got.headers["etag"] == '"1"'
    assert got.json() == saved


async def test_if_match_is_the_expected_version(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    first = await gateway.put("/api/settings/llm/text", json={"provider": "openai", "model": "a"})
    etag = first.headers["etag"]
    second = await gateway.put(
        "/api/settings/llm/text",
        json={"provider": "openai", "model": "b"},
        headers={"if-match": etag},
    )
    assert second.status_code == 200
    assert calls(backends, "PutConfig")[-1].expected_version == 1

    stale = await gateway.put(
        "/api/settings/llm/text",
        json={"provider": "openai", "model": "c"},
        headers={"if-match": etag},
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "version_conflict"
    assert "read it again" in stale.json()["error"]["message"]

    by_body = await gateway.put(
        "/api/settings/llm/text", json={"provider": "openai", "model": "c", "version": 1}
    )
    assert by_body.status_code == 409
    assert calls(backends, "PutConfig")[-1].expected_version == 1


@pytest.mark.parametrize("if_match", ['W/"x"', "abc", "-3"])
async def test_bad_if_match_is_400(gateway: httpx.AsyncClient, if_match: str) -> None:
    response = await gateway.put(
        "/api/settings/llm/text", json={"provider": "openai"}, headers={"if-match": if_match}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "If-Match"


async def test_legacy_body_sets_the_text_config(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    legacy = {"provider": "openai", "model": "gpt-test", "temperature": 1, "api_key": KEY, "x": 1}
    response = await gateway.put("/api/settings/llm", json=legacy)
    assert response.status_code == 200, response.text
    assert KEY not in response.text
    assert response.json()["text"]["model"] == "gpt-test"
    assert response.json()["text"]["api_key"]["is_set"] is True
    request = calls(backends, "PutConfig")[-1]
    assert request.config.backend_type == common_pb2.BACKEND_TYPE_TEXT
    assert request.config.temperature == 1.0
    assert request.expected_version == -1


async def test_put_several_configs(gateway: httpx.AsyncClient, backends: Backends) -> None:
    body = {
        "text": {"provider": "openai", "model": "t", "mode": "member"},
        "image": {"provider": "openai", "model": "dall-e-3", "version": 0},
    }
    response = await gateway.put("/api/settings/llm", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["text"]["model"] == "t"
    assert response.json()["image"]["model"] == "dall-e-3"
    assert response.json()["multimodal"]["version"] == 0
    requests = calls(backends, "PutConfig")
    assert [(r.config.backend_type, r.expected_version) for r in requests] == [
        (common_pb2.BACKEND_TYPE_TEXT, -1),
        (common_pb2.BACKEND_TYPE_IMAGE, 0),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"text": {"provider": "openai", "colour": "red"}}, "text.colour"),
        # provider is required (issue 7: the document said "" was its default, the server refused)
        ({"text": {"provider": "openai", "temperature": "hot"}}, "text.temperature"),
        ({"text": {"provider": "openai", "mode": "free"}}, "text.mode"),
        ({"provider": "openai", "temperature": "0.5"}, "temperature"),
        ({"text": {"model": "gpt-test"}}, "text.provider"),
    ],
)
async def test_invalid_settings_bodies_are_400(
    gateway: httpx.AsyncClient, body: dict, param: str
) -> None:
    response = await gateway.put("/api/settings/llm", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_api_key_routes_never_echo_the_key(
    gateway: httpx.AsyncClient, backends: Backends
) -> None:
    response = await gateway.put(
        "/api/settings/llm/image/api-key", json={"api_key": KEY, "provider": "stability"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "is_set": True,
        "hint": "…1234",
        "fingerprint": "0123456789ab",
        "provider": "stability",
    }
    invalid = await gateway.put("/api/settings/llm/image/api-key", json={"api_key": 12345678})
    assert invalid.status_code == 400
    assert "12345678" not in invalid.text
    unknown_field = await gateway.put(
        "/api/settings/llm/image/api-key", json={"api_key": KEY, "colour": KEY}
    )
    assert unknown_field.status_code == 400
    assert KEY not in unknown_field.text

    deleted = await gateway.delete("/api/settings/llm/image/api-key")
    assert deleted.status_code == 204
    assert calls(backends, "DeleteApiKey")[-1].backend_type == common_pb2.BACKEND_TYPE_IMAGE


async def test_delete_config(gateway: httpx.AsyncClient, backends: Backends) -> None:
    await gateway.put("/api/settings/llm/text", json={"provider": "openai", "model": "x"})
    assert (await gateway.delete("/api/settings/llm/text")).status_code == 204
    missing = await gateway.delete("/api/settings/llm/text")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no config is saved for this backend type"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_unknown_backend_type_is_404(gateway: httpx.AsyncClient, method: str) -> None:
    response = await gateway.request(method, "/api/settings/llm/video", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "unknown backend type 'video': use text, multimodal or image"
    )


async def test_presets(gateway: httpx.AsyncClient, backends: Backends) -> None:
    response = await gateway.get("/api/settings/llm/presets", params={"backend_type": "text"})
    assert response.status_code == 200
    preset = response.json()["presets"][0]
    assert preset["provider"] == "openai"
    assert preset["backend_type"] == "text"
    assert preset["models"] == ["gpt-test", "gpt-test-mini"]
    assert calls(backends, "ListPresets")[-1].backend_type == common_pb2.BACKEND_TYPE_TEXT
    everything = await gateway.get("/api/settings/llm/presets")
    assert everything.status_code == 200
    assert calls(backends, "ListPresets")[-1].backend_type == common_pb2.BACKEND_TYPE_UNSPECIFIED
    wrong = await gateway.get("/api/settings/llm/presets", params={"backend_type": "video"})
    assert wrong.status_code == 400
    assert wrong.json()["error"]["param"] == "backend_type"


async def test_settings_need_a_user(gateway: httpx.AsyncClient, backends: Backends) -> None:
    response = await gateway.get("/api/settings/llm", headers={"authorization": ""})
    assert response.status_code == 401
    assert backends.settings.calls == []
