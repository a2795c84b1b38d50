"""The gateway serves the built web console at / (gateway.console): caching, the content security
policy, client routes, and never in place of the API or the operators' routes."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from gateway_server import serve_gateway

from gateway.console import CONTENT_SECURITY_POLICY
from gateway.environment import Settings

INDEX = (
    '<!doctype html><html><head><script type="module" src="/assets/index-AbC123.js"></script>'
    '</head><body><div id="root"></div></body></html>'
)
ASSET = "console.log('hashed');\n"


@pytest.fixture
def console_dir(tmp_path: Path) -> Path:
    """A build as `make console` lays it out: index.html and content-hashed assets/."""
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-AbC123.js").write_text(ASSET)
    (tmp_path / "robots.txt").write_text("User-agent: *\n")
    # Outside the build: must never be reachable through it.
    (tmp_path.parent / "secret.txt").write_text("not for the browser")
    return tmp_path


@pytest.fixture
async def gateway(console_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        environment="test", jwt_hs256_secret=secrets.token_urlsafe(32), console_dir=console_dir
    )
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


async def test_index_is_revalidated_and_forbids_inline_scripts(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/")
    assert response.status_code == 200
    assert response.text == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src"))
    assert script_src == "script-src 'self'"  # no 'unsafe-inline', no nonce, no CDN
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hashed_assets_are_cached_for_a_year(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/assets/index-AbC123.js")
    assert response.status_code == 200
    assert response.text == ASSET
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in response.headers["content-type"]
    # Files outside assets/ are not content-hashed: revalidated like the page.
    other = await gateway.get("/robots.txt")
    assert other.status_code == 200
    assert other.headers["cache-control"] == "no-cache"


async def test_client_routes_answer_the_page(gateway: httpx.AsyncClient) -> None:
    for path in ("/usage", "/playground", "/settings/text"):
        response = await gateway.get(path)
        assert response.status_code == 200, path
        assert response.text == INDEX
        assert response.headers["cache-control"] == "no-cache"
    head = await gateway.head("/usage")
    assert head.status_code == 200


async def test_missing_files_are_404_not_the_page(gateway: httpx.AsyncClient) -> None:
    for path in ("/assets/index-old999.js", "/favicon.ico", "/assets/nothing"):
        response = await gateway.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"]
    # Nothing outside the build, however the path is spelled.
    for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt"):
        response = await gateway.get(path)
        assert "not for the browser" not in response.text, path


async def test_the_api_and_operator_routes_are_never_shadowed(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/healthz")).json() == {"status": "ok"}
    assert (await gateway.get("/openapi.json")).json()["info"]["title"] == "Model access gateway"
    assert "swagger" in (await gateway.get("/docs")).text.lower()
    assert (await gateway.get("/metrics")).status_code == 200
    # An unknown API path stays the API's JSON 404, not the console's page.
    unknown = await gateway.get("/api/no-such-route")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert "error" in unknown.json()
    for path in ("/api", "/docs/nothing", "/healthz/x", "/metrics/x", "/readyz/x"):
        response = await gateway.get(path)
        assert response.status_code == 404, path
        assert INDEX not in response.text
    # A GET of a POST-only API route stays a 405.
    wrong_method = await gateway.get("/api/text-proxy/v1/chat/completions")
    assert wrong_method.status_code == 405
    # Writes never reach the console.
    assert (await gateway.post("/usage")).status_code in (404, 405)


async def test_without_a_build_the_gateway_serves_the_api_alone(tmp_path: Path) -> None:
    settings = Settings(
        environment="test", jwt_hs256_secret=secrets.token_urlsafe(32), console_dir=tmp_path
    )
    async with (
        serve_gateway(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
