"""LeanRoute: an APIRoute for the proxy's hot path that resolves its dependencies itself.

FastAPI (0.165 here) re-derives facts about every dependency on every request; measured
in-process, that was about a third of the gateway's own time per chat completion. The proxy
handlers take only the Request and dependencies of the form `async def dep(request: Request)`,
which need none of that machinery: LeanRoute calls them directly. OpenAPI, routing, exception
handlers and the endpoint's signature stay FastAPI's. Where this could differ from FastAPI (a
body, query or path parameter, a sub-dependency, route or router dependencies, a return value
that is not a Response, dependency overrides in tests) FastAPI's own handler serves instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import Request, params, routing
from fastapi.routing import APIRoute
from starlette.responses import Response

Resolver = Callable[[Request], Awaitable[Any]] | None  # None: the Request itself


def _request_only_dependency(annotation: Any) -> Resolver | bool:
    """The dependency function of `Annotated[T, Depends(dep)]` where dep takes only the Request;
    False when the annotation is anything else."""
    if get_origin(annotation) is not Annotated:
        return False
    depends = [m for m in get_args(annotation)[1:] if isinstance(m, params.Depends)]
    if len(depends) != 1 or depends[0].dependency is None:
        return False
    dependency = depends[0].dependency
    if not inspect.iscoroutinefunction(dependency):
        return False
    hints = get_type_hints(dependency, include_extras=True)
    parameters = list(inspect.signature(dependency).parameters)
    if len(parameters) != 1 or hints.get(parameters[0]) is not Request:
        return False
    return dependency


def lean_plan(endpoint: Callable[..., Any]) -> list[tuple[str, Resolver]] | None:
    """How to call `endpoint` without FastAPI's dependency solver, or None if that is not exact."""
    if not inspect.iscoroutinefunction(endpoint):
        return None
    hints = get_type_hints(endpoint, include_extras=True)
    returns = hints.get("return")
    if not (inspect.isclass(returns) and issubclass(returns, Response)):
        return None
    plan: list[tuple[str, Resolver]] = []
    for name in inspect.signature(endpoint).parameters:
        annotation = hints.get(name)
        if annotation is Request:
            plan.append((name, None))
            continue
        resolver = _request_only_dependency(annotation)
        if resolver is False:
            return None
        plan.append((name, resolver))  # type: ignore[arg-type]
    return plan


def _router_dependencies() -> list[Any]:
    # FastAPI builds an included route's handler with its inclusion (router prefix, router-level
    # dependencies) in a context variable; private, hence the care.
    context_var = getattr(routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    return list(getattr(context, "dependencies", None) or [])


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()
        plan = lean_plan(self.endpoint)
        if plan is None or self.dependencies or _router_dependencies():
            return fastapi_handler
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await fastapi_handler(request)
            arguments = {}
            for name, resolve in plan:
                arguments[name] = request if resolve is None else await resolve(request)
            return await endpoint(**arguments)

        return handler
