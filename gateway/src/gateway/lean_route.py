"""LeanRoute: an APIRoute for the proxy's hot path that resolves its dependencies itself.

FastAPI (0.165 here) re-derives facts about every dependency on every request; measured
in-process, that was about a third of the gateway's own time per chat completion. The proxy
handlers take only the Request and dependencies of the form `async def dep(request: Request)`,
which need none of that machinery: LeanRoute calls them directly. OpenAPI, routing, exception
handlers and the endpoint's signature stay FastAPI's. Where this could differ from FastAPI (a
body, query or path parameter, a sub-dependency, route or router dependencies, a return value
that is not a Response, dependency overrides in tests) FastAPI's own handler serves instead, and
so it does when the plan cannot be checked against the dependency tree FastAPI built (a FastAPI
release that changes how included routes are built): it fails closed, never skipping a
dependency. What it saves is measured in docs/performance.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import Request, params, routing
from fastapi.dependencies.models import Dependant
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


# FastAPI builds an included route's handler with its inclusion (router prefix, router-level
# dependencies) in this private context variable. LeanRoute reads it only to *check* that its
# plan is exactly what FastAPI would run; whenever it is missing or does not look as expected,
# the route is served by FastAPI's own handler (fail closed).
_INCLUSION_CONTEXT = "_effective_route_context_var"
_UNKNOWN = object()


def _effective_dependant(route: APIRoute) -> Any:
    """The dependency tree FastAPI would solve for this route as it is being built (router-level
    dependencies included), or _UNKNOWN."""
    context_var = getattr(routing, _INCLUSION_CONTEXT, None)
    if not isinstance(context_var, ContextVar):
        return _UNKNOWN
    context = context_var.get()
    if context is None:  # a route added to the app itself: its own dependant is complete
        return route.dependant
    if getattr(context, "original_route", None) is not route:
        return _UNKNOWN
    return getattr(context, "dependant", _UNKNOWN)


def _plan_is_exact(dependant: Any, plan: list[tuple[str, Resolver]]) -> bool:
    """True when FastAPI would solve exactly the plan's dependencies (in order, each without
    sub-dependencies) and nothing else: no parameters, no body, no security scopes."""
    if not isinstance(dependant, Dependant):
        return False
    if (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
    ):
        return False
    expected = [resolve for _, resolve in plan if resolve is not None]
    solved = dependant.dependencies
    if [d.call for d in solved] != expected:
        return False
    return all(not d.dependencies and not d.query_params and not d.body_params for d in solved)


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()
        plan = lean_plan(self.endpoint)
        if plan is None or not _plan_is_exact(_effective_dependant(self), plan):
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
