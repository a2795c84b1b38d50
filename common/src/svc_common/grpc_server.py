"""gRPC server bootstrap shared by every service: service-token auth, error mapping, tracing,
health, reflection, graceful stop (the process around it: svc_common.lifecycle).

Auth, error mapping and metrics (svc_common.metrics) wrap each method handler once, when a
servicer is registered, rather than as grpc.aio interceptors: an interceptor runs per call and
builds a new handler each time, which cost more CPU than a short RPC's own work.
OpenTelemetry's interceptor is installed only when a tracer provider is
(telemetry.server_interceptors)."""

from __future__ import annotations

import logging
from asyncio import CancelledError
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from svc_common import grpc_client, metrics
from svc_common.auth import CallRefused, ServiceAuth, bind_caller
from svc_common.environment import ServiceSettings
from svc_common.errors import InvalidArgument, abort_with
from svc_common.telemetry import server_interceptors

log = logging.getLogger(__name__)

# Keepalive and connection age, set beside the channel options they must accept.
SERVER_OPTIONS = grpc_client.SERVER_OPTIONS


class GrpcService:
    """A built, not yet started, gRPC server with its health servicer and bound port."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        health: health_aio.HealthServicer,
        names: Sequence[str],
    ):
        self.server = server
        self.port = port
        self.health = health
        self._names = list(names)

    async def start(self) -> None:
        await self.server.start()
        for name in ["", *self._names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None) -> None:
        """Stop taking new calls, mark NOT_SERVING, let in-flight calls finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


class _GuardedServer(grpc.aio.Server):
    """A grpc.aio server whose every method handler requires a valid service token (health and
    reflection excepted) and maps exceptions to statuses (errors.abort_with).

    It implements grpc.aio's public Server interface by delegating to a plain `grpc.aio.server()`,
    and wraps each handler as a servicer registers it (generated `add_*_to_server` functions call
    `add_generic_rpc_handlers` and `add_registered_method_handlers`)."""

    def __init__(self, auth: ServiceAuth, interceptors: Sequence[Any], options: Any) -> None:
        self._server = grpc.aio.server(interceptors=interceptors, options=options)
        self._auth = auth

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [_GuardedGeneric(self, h) for h in generic_rpc_handlers]
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        guarded = {
            name: self.guard(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        self._server.add_registered_method_handlers(service_name, guarded)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    # grpc.aio.Server's own signature, hence its `timeout` parameter.
    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return await self._server.wait_for_termination(timeout)

    def guard(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if ServiceAuth.exempt(method):
            return handler
        # The request is parsed inside the guard, not by grpc: a request grpc cannot parse
        # (a string field that is not UTF-8, e.g. a lone surrogate from a non-Python client)
        # would otherwise end as UNKNOWN naming a Python exception, not INVALID_ARGUMENT.
        parse = handler.request_deserializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(
                    self._auth,
                    method,
                    handler.unary_unary,
                    parse,
                    metrics.server_method(method, "unary_unary"),
                ),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(
                    self._auth,
                    method,
                    handler.unary_stream,
                    parse,
                    metrics.server_method(method, "unary_stream"),
                ),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{method}: only unary requests are served (client streams are not)")


class _GuardedGeneric(grpc.GenericRpcHandler):
    """A generic handler's answers, guarded once per method (registered handlers take precedence,
    so this serves only methods a servicer did not pre-register)."""

    def __init__(self, server: _GuardedServer, inner: grpc.GenericRpcHandler) -> None:
        self._server = server
        self._inner = inner
        self._guarded: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if method in self._guarded:
            return self._guarded[method]
        handler = self._inner.service(details)
        guarded = self._server.guard(method, handler) if handler is not None else None
        if len(self._guarded) < 1024:  # method names come from callers
            self._guarded[method] = guarded
        return guarded


async def _authenticate(auth: ServiceAuth, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Verify the call's metadata once and hand the handler exactly that caller (auth.caller)."""
    try:
        who = auth.authenticate(context.invocation_metadata())
    except CallRefused as refused:
        await context.abort(refused.code, refused.details)
    bind_caller(context, who)


def _parsed(parse: Any, request: Any) -> Any:
    if parse is None:
        return request
    try:
        return parse(request)
    except DecodeError:
        raise InvalidArgument(
            "the request is not a valid protobuf message: every string field must be valid UTF-8"
            " (no lone surrogates such as \\ud800 and no other invalid bytes)"
        ) from None


def _ended_with(context: grpc.aio.ServicerContext[Any, Any], err: BaseException) -> grpc.StatusCode:
    """The status a call that raised ends with: an abort's code (set on the context), else
    CANCELLED (the caller went away) or UNKNOWN."""
    code: grpc.StatusCode | None = context.code()
    if code is not None:
        return code
    return grpc.StatusCode.CANCELLED if isinstance(err, CancelledError) else grpc.StatusCode.UNKNOWN


def _guard_unary(
    auth: ServiceAuth, method: str, inner: Any, parse: Any, meter: metrics.MethodMetrics
) -> Any:
    async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = meter.begin()
        code = grpc.StatusCode.OK
        try:
            await _authenticate(auth, context)
            try:
                return await inner(_parsed(parse, request), context)
            except Exception as err:
                await abort_with(context, err, method)
        except BaseException as err:
            code = _ended_with(context, err)
            raise
        finally:
            meter.end(code, started)

    return unary_unary


def _guard_stream(
    auth: ServiceAuth, method: str, inner: Any, parse: Any, meter: metrics.MethodMetrics
) -> Any:
    async def unary_stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        started = meter.begin()
        code = grpc.StatusCode.OK
        try:
            await _authenticate(auth, context)
            try:
                async for message in inner(_parsed(parse, request), context):
                    yield message
            except Exception as err:
                await abort_with(context, err, method)
        except BaseException as err:
            code = _ended_with(context, err)
            raise
        finally:
            meter.end(code, started)

    return unary_stream


def build_server(
    settings: ServiceSettings,
    service_names: Sequence[str],
    *,
    allowed_callers: frozenset[str] | None = None,
) -> tuple[grpc.aio.Server, int, health_aio.HealthServicer]:
    """A grpc.aio server with auth, error mapping and tracing, bound to settings.listen.

    Register servicers on the returned server (each handler is guarded as it is added), then wrap
    it in GrpcService to start it.
    """
    if settings.service_token_secret is None:
        raise RuntimeError(
            "service_token_secret is required: callers are authenticated by service token"
        )
    auth = ServiceAuth(settings.service_token_secret.get_secret_value(), allowed_callers)
    server = _GuardedServer(auth, server_interceptors(), SERVER_OPTIONS)
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise RuntimeError(f"could not bind {settings.listen}")
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return server, port, health
