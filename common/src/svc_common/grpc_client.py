"""Channels to other services: load spread over every replica, keepalive that outlives a replaced
pod, tracing, and retries only where a retry cannot repeat work. The one place every channel's
options are set (and, in SERVER_OPTIONS, what servers must accept of them).

Load spread: every channel balances with `round_robin` over all the addresses its target
resolves to, so a second replica takes calls as soon as it is ready (gRPC's default, pick_first,
sends everything to the first address it reached). A target is any gRPC name: `host:port` or
`dns:///host:port` (a Kubernetes headless Service answers one address per ready pod), or a fixed
list `ipv4:127.0.0.1:50051,127.0.0.1:50061` (`make run` with replicas). The DNS resolver
re-resolves when a connection fails, and servers close every connection after a maximum age
(SERVER_OPTIONS), so clients also re-resolve while nothing fails and pods added by a scale-up
get their share within minutes. Where a mesh or control plane serves xDS, an `xds:///name`
target with a bootstrap file (GRPC_XDS_BOOTSTRAP) takes over balancing without code changes.

Retries: gRPC's transparent retries (the call never left this client, or the server never saw
it) are on for every method. Beyond those, UNAVAILABLE is retried only for reads: a server may
answer UNAVAILABLE after it did the work (text-svc does so for a provider outage after it has
called the provider), so retrying a call that reaches a provider or moves money would repeat both.

Metrics: every channel counts its calls per method and status, their latency and those in flight
(svc_common.metrics). Not through a grpc.aio client interceptor: an intercepted call runs inside
a task of its own, which costs more than the metrics and changes what `call.cancel()` reaches.
The channel hands out its own multicallables, each with its method's metrics bound once, and a
call reports when it ends through `add_done_callback` (streams: when the stream ends).
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import grpc

from svc_common import metrics
from svc_common.telemetry import client_interceptors

# Idempotent reads, by service: retried on UNAVAILABLE. Anything not named here (text.v1
# Generate/GenerateStream, billing.v1 Reserve/Release/Grant, settings.v1 writes) is not.
RETRIED_READS: dict[str, tuple[str, ...]] = {
    "settings.v1.SettingsService": ("ResolveConfig", "GetConfig", "GetConfigs", "ListPresets"),
    "billing.v1.BillingService": ("GetBalance", "ListUsage"),
    "text.v1.TextService": ("ListModels", "CheckStatus"),
}

_READ_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

SERVICE_CONFIG = json.dumps(
    {
        # One subchannel per address, calls spread in turn over the ready ones; a replica that
        # goes away is skipped as soon as its connection fails.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in RETRIED_READS.items()
                    for method in methods
                ],
                "retryPolicy": _READ_RETRY_POLICY,
            }
        ],
    }
)

# Keepalive: a ping every KEEPALIVE_TIME_MS, even between calls, and a connection that does not
# answer within KEEPALIVE_TIMEOUT_MS is dead. A pod that vanished without closing its connections
# (node lost, SIGKILL behind a NAT) is then noticed in seconds, not at the TCP timeout, and its
# subchannel leaves the round-robin.
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
# Servers ping their callers too (a caller that vanished frees its streams), less often.
SERVER_KEEPALIVE_TIME_MS = 30_000
# The longest a model stream may take (GATEWAY_UPSTREAM_DEADLINE_S = 120 s) plus margin: a server
# closing an old connection lets calls on it finish for this long.
CONNECTION_AGE_GRACE_MS = 150_000

Option = tuple[str, str | int]


def channel_options(
    keepalive_time_ms: int = KEEPALIVE_TIME_MS, keepalive_timeout_ms: int = KEEPALIVE_TIMEOUT_MS
) -> list[Option]:
    """Every channel's options (CHANNEL_OPTIONS); the keepalive timings are parameters only so
    that a test can run the same options scaled down."""
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        # Also keeps transparent retries on (calls that never reached the server).
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A replaced pod's address is tried again quickly, and never waited for more than 5 s.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 5_000),
        # DNS is asked again at most this often (a failing connection asks at once otherwise).
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ]


def server_options(
    channel_keepalive_time_ms: int = KEEPALIVE_TIME_MS,
    keepalive_time_ms: int = SERVER_KEEPALIVE_TIME_MS,
) -> list[Option]:
    """What every server sets (SERVER_OPTIONS), given the keepalive of the channels that call it
    (parameters for the same reason as channel_options')."""
    return [
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        ("grpc.max_send_message_length", 32 * 1024 * 1024),
        ("grpc.keepalive_time_ms", keepalive_time_ms),
        # Accept the channels' pings (every channel_keepalive_time_ms, with or without calls).
        # A server counts a strike for each ping that comes sooner than the minimum interval
        # after the previous one while it sent no data, and answers the third strike with
        # GOAWAY ENHANCE_YOUR_CALM "too_many_pings": the connection closes, streams on it fail,
        # the caller reconnects. gRPC's minimum is 5 minutes by default, and 2 hours on a
        # connection without calls unless permit_without_calls. The key must be gRPC's exact
        # name (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS): a misspelt key is
        # ignored without a word, as "grpc.http2.min_recv_ping_interval_without_data_ms" was,
        # and every connection idle for a minute or more was closed by the default.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", channel_keepalive_time_ms // 2),
        ("grpc.http2.max_pings_without_data", 0),
        # Every connection is closed after about 5 minutes (calls on it get CONNECTION_AGE_GRACE_MS
        # to finish; the client reconnects at once): clients re-resolve, so replicas added by a
        # scale-up receive calls from callers that were already connected.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_MS),
        ("grpc.so_reuseport", 0),
    ]


CHANNEL_OPTIONS = channel_options()
# Kept here beside what the channels send (svc_common.grpc_server uses them).
SERVER_OPTIONS = server_options()


def channel(target: str) -> grpc.aio.Channel:
    return metered(
        grpc.aio.insecure_channel(
            target, options=CHANNEL_OPTIONS, interceptors=client_interceptors()
        )
    )


def metered(inner: grpc.aio.Channel) -> grpc.aio.Channel:
    """`inner` with every call it makes counted (see the module's docstring)."""
    return _MeteredChannel(inner)


class _MeteredUnaryUnary:
    __slots__ = ("_inner", "_meter")

    def __init__(self, inner: Any, meter: metrics.MethodMetrics) -> None:
        self._inner = inner
        self._meter = meter

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        started = self._meter.begin()
        try:
            call = self._inner(request, **kwargs)
        except BaseException:
            self._meter.end(None, started)
            raise
        call.add_done_callback(self._meter.ended(started))
        return call


class _MeteredChannel(grpc.aio.Channel):
    """A grpc.aio channel (its public interface, delegated) whose unary-request calls are counted;
    client-streaming methods pass through uncounted (no service has one)."""

    def __init__(self, inner: grpc.aio.Channel) -> None:
        self._inner = inner

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _MeteredUnaryUnary(
            self._inner.unary_unary(method, *args, **kwargs),
            metrics.client_method(method, "unary_unary"),
        )

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _MeteredUnaryUnary(
            self._inner.unary_stream(method, *args, **kwargs),
            metrics.client_method(method, "unary_stream"),
        )

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_stream(method, *args, **kwargs)

    async def close(self, grace: float | None = None) -> None:
        await self._inner.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._inner.channel_ready()

    async def __aenter__(self) -> _MeteredChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self._inner.close(None)
