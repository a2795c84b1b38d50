"""What gateway.lean_route.LeanRoute saves: microseconds per request through a FastAPI app whose
endpoint has the chat-completion route's shape (the Request and three request-only dependencies,
on an included router), with FastAPI's APIRoute and with LeanRoute, in one process.

    .venv/bin/python -m bench.route_overhead [-n 5000]

The endpoint does no work beyond reading the body, so the difference is FastAPI's dependency
solving per request. Runs alternate between the two apps; the median of seven runs is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from gateway.lean_route import LeanRoute


async def current_user(request: Request) -> str:
    return request.headers.get("authorization", "")


async def get_request_id(request: Request) -> str:
    return request.headers.get("x-request-id", "")


async def text_client(request: Request) -> object:
    return request.app.state.client


async def create_chat_completion(
    request: Request,
    user: Annotated[str, Depends(current_user)],
    request_id: Annotated[str, Depends(get_request_id)],
    text: Annotated[object, Depends(text_client)],
) -> Response:
    return Response(await request.body(), media_type="application/json")


def app_with(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    app.state.client = object()
    router = APIRouter(prefix="/api/text-proxy", route_class=route_class)
    router.add_api_route(
        "/v1/chat/completions", create_chat_completion, methods=["POST"], response_model=None
    )
    app.include_router(router)
    return app


BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/api/text-proxy/v1/chat/completions",
    "raw_path": b"/api/text-proxy/v1/chat/completions",
    "query_string": b"",
    "root_path": "",
    "server": ("gateway", 80),
    "client": ("client", 1),
    "headers": [
        (b"authorization", b"Bearer token"),
        (b"x-request-id", b"bench"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}


async def microseconds_per_request(app: FastAPI, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise AssertionError(f"status {message['status']}")

    start = time.perf_counter()
    for _ in range(n):
        await app(dict(SCOPE), receive, send)
    return (time.perf_counter() - start) / n * 1e6


async def main(n: int) -> None:
    apps = {"APIRoute": app_with(APIRoute), "LeanRoute": app_with(LeanRoute)}
    runs: dict[str, list[float]] = {name: [] for name in apps}
    for app in apps.values():
        await microseconds_per_request(app, 500)  # warm up
    for _ in range(7):
        for name, app in apps.items():
            runs[name].append(await microseconds_per_request(app, n))
    for name, times in runs.items():
        sys.stdout.write(
            f"{name}: {statistics.median(times):.0f} µs/request (median of 7 runs of {n})\n"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    asyncio.run(main(parser.parse_args().n))
