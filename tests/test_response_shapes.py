"""The gateway's answers have one source of shape: its OpenAPI document.

For every operation the document lists, a request that succeeds against the whole platform, and
its body validated against the documented 2xx schema. An operation added without a case here
fails the coverage check, so a new route cannot return a shape nobody checked. (The schemathesis
run in test_openapi_fuzz.py checks whatever answers its generated requests get, mostly refusals;
this one makes sure every success is checked too.)
"""

from __future__ import annotations

from typing import Any

import httpx
from harness import USER_OPENAI_KEY, Platform
from image_server import data_url, image_bytes
from jsonschema import Draft202012Validator

USER = "shapes"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
RESPONSE = {"model": "gpt-4o-mini", "input": "hi"}
IMAGE_QUESTION = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": data_url(image_bytes()), "detail": "low"}},
        ],
    }
]

# (method, path template) -> (path to call, JSON body or None); in order, as they depend on it.
CASES: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/healthz"): ("/healthz", None),
    ("GET", "/readyz"): ("/readyz", None),
    ("GET", "/metrics"): ("/metrics", None),
    ("GET", "/api/settings/llm/presets"): ("/api/settings/llm/presets", None),
    ("PUT", "/api/settings/llm/{backend_type}"): (
        "/api/settings/llm/multimodal",
        {"provider": "openai", "model": "gpt-4o", "mode": "byok"},
    ),
    ("PUT", "/api/settings/llm/{backend_type}/api-key"): (
        "/api/settings/llm/multimodal/api-key",
        {"api_key": USER_OPENAI_KEY},
    ),
    ("GET", "/api/settings/llm/{backend_type}"): ("/api/settings/llm/multimodal", None),
    ("PUT", "/api/settings/llm"): (
        "/api/settings/llm",
        {"text": {"provider": "openai", "model": "gpt-4o-mini", "mode": "member"}},
    ),
    ("GET", "/api/settings/llm"): ("/api/settings/llm", None),
    # Multimodal with the user's own key (configured above): a question about a data: URL image.
    ("POST", "/api/multimodal-proxy/v1/chat/completions"): (
        "/api/multimodal-proxy/v1/chat/completions",
        {"model": "gpt-4o", "messages": IMAGE_QUESTION},
    ),
    ("GET", "/api/multimodal-proxy/v1/models"): ("/api/multimodal-proxy/v1/models", None),
    ("GET", "/api/multimodal-proxy/status"): ("/api/multimodal-proxy/status", None),
    ("POST", "/api/text-proxy/v1/chat/completions"): ("/api/text-proxy/v1/chat/completions", CHAT),
    ("POST", "/api/llm-proxy/v1/chat/completions"): ("/api/llm-proxy/v1/chat/completions", CHAT),
    ("POST", "/api/text-proxy/v1/responses"): ("/api/text-proxy/v1/responses", RESPONSE),
    ("POST", "/api/llm-proxy/v1/responses"): ("/api/llm-proxy/v1/responses", RESPONSE),
    ("GET", "/api/text-proxy/v1/models"): ("/api/text-proxy/v1/models", None),
    ("GET", "/api/llm-proxy/v1/models"): ("/api/llm-proxy/v1/models", None),
    ("GET", "/api/text-proxy/v1/models/{model}"): ("/api/text-proxy/v1/models/gpt-4o-mini", None),
    ("GET", "/api/llm-proxy/v1/models/{model}"): ("/api/llm-proxy/v1/models/gpt-4o-mini", None),
    ("GET", "/api/text-proxy/status"): ("/api/text-proxy/status", None),
    ("GET", "/api/llm-proxy/status"): ("/api/llm-proxy/status", None),
    ("GET", "/api/billing/balance"): ("/api/billing/balance", None),
    ("GET", "/api/usage"): ("/api/usage", None),
    ("DELETE", "/api/settings/llm/{backend_type}/api-key"): (
        "/api/settings/llm/multimodal/api-key",
        None,
    ),
    ("DELETE", "/api/settings/llm/{backend_type}"): ("/api/settings/llm/multimodal", None),
    ("POST", "/api/image-proxy/v1/images/generations"): (
        "/api/image-proxy/v1/images/generations",
        {"model": "gpt-image-2", "prompt": "a cat", "size": "1024x1024"},
    ),
    ("GET", "/api/image-proxy/v1/models"): ("/api/image-proxy/v1/models", None),
    ("GET", "/api/image-proxy/status"): ("/api/image-proxy/status", None),
    # The path of an image generated with response_format url, filled in by the test.
    ("GET", "/api/image-proxy/v1/images/files/{image_id}"): ("", None),
}
IMAGE_FILE = ("GET", "/api/image-proxy/v1/images/files/{image_id}")


async def test_every_operation_answers_its_documented_shape(platform: Platform) -> None:
    await platform.grant(USER, 5_000_000)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=10) as client:
        document = (await client.get("/openapi.json")).json()
        operations = {
            (method.upper(), path)
            for path, item in document["paths"].items()
            for method in item
            if method in ("get", "put", "post", "delete", "patch")
        }
        assert set(CASES) == operations, "give each documented operation a case here"

        # Image generation with the user's own key (member mode for images is off by default),
        # and one image stored behind a signed URL for the image file route.
        image = {"provider": "openai", "model": "gpt-image-2", "mode": "byok"}
        await client.put("/api/settings/llm/image", json=image, headers=platform.auth(USER))
        await client.put(
            "/api/settings/llm/image/api-key",
            json={"api_key": USER_OPENAI_KEY},
            headers=platform.auth(USER),
        )
        stored = await client.post(
            "/api/image-proxy/v1/images/generations",
            json={"prompt": "a cat", "size": "1024x1024", "response_format": "url"},
            headers=platform.auth(USER),
        )
        cases = {**CASES, IMAGE_FILE: (stored.json()["data"][0]["url"], None)}

        for (method, template), (path, body) in cases.items():
            response = await client.request(method, path, json=body, headers=platform.auth(USER))
            where = f"{method} {template}"
            assert 200 <= response.status_code < 300, f"{where}: {response.text}"
            documented = document["paths"][template][method.lower()]["responses"]
            answer = documented.get(str(response.status_code))
            assert answer is not None, f"{where}: {response.status_code} is not documented"
            content = answer.get("content")
            if not content:
                assert response.content == b"", f"{where}: a body where none is documented"
                continue
            media_type = response.headers["content-type"].partition(";")[0]
            assert media_type in content, f"{where}: {media_type} is not documented"
            schema = content[media_type].get("schema")
            if media_type != "application/json" or not schema:
                continue
            validator = Draft202012Validator({**schema, "components": document["components"]})
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(response.json())
            ]
            assert not errors, f"{where} answers another shape than documented: {errors}"
