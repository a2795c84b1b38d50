"""LeanRoute serves exactly as FastAPI would, or leaves the endpoint to FastAPI."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Request
from starlette.responses import Response

from gateway import lean_route
from gateway.lean_route import LeanRoute, lean_plan
from gateway.routes import text


async def caller_name(request: Request) -> str:
    return request.headers.get("x-name", "nobody")


async def caller_name_via_sub_dependency(name: Annotated[str, Depends(caller_name)]) -> str:
    return name


CallerName = Annotated[str, Depends(caller_name)]


async def greet(request: Request, name: CallerName) -> Response:
    return Response(f"hello {name} on {request.url.path}")


async def greet_with_body(name: CallerName, body: Annotated[dict, Body()]) -> Response:
    return Response(f"hello {name} {body}")


async def greet_nested(name: Annotated[str, Depends(caller_name_via_sub_dependency)]) -> Response:
    return Response(f"hello {name}")


def test_lean_plan_takes_only_request_only_dependencies() -> None:
    assert lean_plan(greet) == [("request", None), ("name", caller_name)]
    assert lean_plan(greet_with_body) is None
    assert lean_plan(greet_nested) is None
    assert lean_plan(text.create_chat_completion) is not None


async def test_lean_route_serves_and_honours_dependency_overrides() -> None:
    app = FastAPI()
    app.router.route_class = LeanRoute
    app.add_api_route("/greet", greet, methods=["GET"])
    app.add_api_route("/body", greet_with_body, methods=["POST"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/greet", headers={"x-name": "ann"})).text == "hello ann on /greet"
        posted = await client.post("/body", json={"a": 1})
        assert posted.text == "hello nobody {'a': 1}"

        async def overridden() -> str:
            return "override"

        app.dependency_overrides[caller_name] = overridden
        assert (await client.get("/greet")).text == "hello override on /greet"


async def refuse(request: Request) -> None:
    raise HTTPException(403, "refused by the router")


def _app_with_guarded_router() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/guarded", route_class=LeanRoute, dependencies=[Depends(refuse)])
    router.add_api_route("/greet", greet, methods=["GET"])
    app.include_router(router)
    return app


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(path)


async def test_a_router_dependency_is_never_skipped() -> None:
    answer = await _get(_app_with_guarded_router(), "/guarded/greet")
    assert (answer.status_code, answer.json()) == (403, {"detail": "refused by the router"})


async def test_when_fastapi_internals_change_lean_route_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A FastAPI release without the inclusion context LeanRoute checks its plan against: FastAPI's
    # own handler serves, so the router's dependency still runs.
    monkeypatch.setattr(lean_route, "_INCLUSION_CONTEXT", "_no_such_context_var")
    answer = await _get(_app_with_guarded_router(), "/guarded/greet")
    assert answer.status_code == 403

    app = FastAPI()
    app.router.route_class = LeanRoute
    app.add_api_route("/greet", greet, methods=["GET"])
    answer = await _get(app, "/greet")  # still served, by FastAPI
    assert answer.text == "hello nobody on /greet"
