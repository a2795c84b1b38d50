"""Connections between services outlive idle gaps and silent streams (svc_common.grpc_client):
the channels' keepalive pings are within what the servers accept, so no server answers them with
GOAWAY ENHANCE_YOUR_CALM "too_many_pings", which closes the connection, fails the streams on it
with UNAVAILABLE and makes the caller reconnect.

A server counts a strike for a ping that comes too soon after the previous one while it sent no
data, and sends that GOAWAY on the third strike. The server and the channel here run the
product's option lists (server_options / channel_options) with their keepalive timings divided
by SCALE, so that a minute of pings takes a few seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from svc_common.grpc_client import (
    KEEPALIVE_TIME_MS,
    SERVER_KEEPALIVE_TIME_MS,
    channel_options,
    server_options,
)

# gRPC clients never ping more often than once a second, so 20 s scaled to 1 s is as far as the
# channel's pings can be sped up.
SCALE = 20
PING_EVERY_S = KEEPALIVE_TIME_MS / SCALE / 1000
# An idle connection: long enough for the pings that would earn three strikes (the first ping
# after data is never one), and one more period of margin.
PINGS_TO_GOAWAY = 4
QUIET_S = (PINGS_TO_GOAWAY + 1) * PING_EVERY_S
# A silent stream: two periods more, as the server's answer to the first ping also carries the
# connection's window update for the request, which counts as data sent.
SILENT_STREAM_S = QUIET_S + 2 * PING_EVERY_S

SERVICE = "keepalive.test.Echo"
MESSAGE = b"x" * 200


class Echo:
    """Answers unary calls and paced or late server streams, noting each caller's address (a
    reconnect comes from a new port)."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def answer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.peers.append(context.peer())
        return MESSAGE

    async def paced(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Twenty messages 20 ms apart, as a model streams its tokens."""
        self.peers.append(context.peer())
        for _ in range(20):
            yield MESSAGE
            await asyncio.sleep(0.02)

    async def late(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Nothing at all for SILENT_STREAM_S, then one message: a model slow to its first
        token."""
        self.peers.append(context.peer())
        await asyncio.sleep(SILENT_STREAM_S)
        yield MESSAGE

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Answer": grpc.unary_unary_rpc_method_handler(self.answer),
                "Paced": grpc.unary_stream_rpc_method_handler(self.paced),
                "Late": grpc.unary_stream_rpc_method_handler(self.late),
            },
        )


@pytest.fixture
async def echo() -> AsyncIterator[tuple[Echo, grpc.aio.Channel]]:
    servicer = Echo()
    server = grpc.aio.server(
        options=server_options(
            channel_keepalive_time_ms=KEEPALIVE_TIME_MS // SCALE,
            keepalive_time_ms=SERVER_KEEPALIVE_TIME_MS // SCALE,
        )
    )
    server.add_generic_rpc_handlers([servicer.handler()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    chan = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=channel_options(keepalive_time_ms=KEEPALIVE_TIME_MS // SCALE)
    )
    await chan.channel_ready()
    yield servicer, chan
    await chan.close()
    await server.stop(None)


async def _left_ready_within(chan: grpc.aio.Channel, seconds: float) -> bool:
    """Whether the channel's connection goes (a GOAWAY moves it out of READY) within `seconds`."""
    assert chan.get_state() == grpc.ChannelConnectivity.READY
    try:
        await asyncio.wait_for(
            chan.wait_for_state_change(grpc.ChannelConnectivity.READY), timeout=seconds
        )
    except TimeoutError:
        return False
    return True


async def test_an_idle_connection_stays_up_between_bursts_and_streams(
    echo: tuple[Echo, grpc.aio.Channel],
) -> None:
    servicer, chan = echo
    answer: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = chan.unary_unary(f"/{SERVICE}/Answer")
    paced: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = chan.unary_stream(f"/{SERVICE}/Paced")

    # What the gateway sends a service: a burst of short calls and a paced stream...
    replies = await asyncio.gather(*(answer(b"", timeout=10) for _ in range(20)))
    streamed = [m async for m in paced(b"", timeout=10)]
    assert replies == [MESSAGE] * 20
    assert len(streamed) == 20

    # ...then nothing for a while, the channel pinging all along.
    assert not await _left_ready_within(chan, QUIET_S), (
        "the server closed the idle connection (GOAWAY too_many_pings)"
    )

    assert await answer(b"", timeout=10) == MESSAGE
    assert len(set(servicer.peers)) == 1, f"the caller reconnected: {set(servicer.peers)}"


async def test_a_stream_that_is_silent_for_a_while_is_not_cut(
    echo: tuple[Echo, grpc.aio.Channel],
) -> None:
    servicer, chan = echo
    late: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = chan.unary_stream(f"/{SERVICE}/Late")

    # The channel pings through the silence; the server must not count those as abuse.
    streamed = [m async for m in late(b"", timeout=SILENT_STREAM_S + 10)]

    assert streamed == [MESSAGE]
    assert chan.get_state() == grpc.ChannelConnectivity.READY
    assert len(set(servicer.peers)) == 1
