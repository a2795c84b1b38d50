"""LeanRoute serves exactly as FastAPI would, or leaves the endpoint to FastAPI."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Body, Depends, FastAPI, Request
from starlette.responses import Response

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
