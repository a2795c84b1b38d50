"""Every write announces "<user_id>:<backend_type>" on the settings-changed channel."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis
from settings_test_support import (
    BYOK,
    IMAGE,
    MULTIMODAL,
    TEXT,
    Client,
    config,
    put,
    rpc_error,
    set_key,
)

from grpc_stubs.settings.v1 import settings_pb2
from settings_svc.server import SettingsServer

pytestmark = pytest.mark.timeout(60)


async def _next_message(pubsub: aioredis.client.PubSub) -> str:
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
    assert message is not None, "no change message within 10 s"
    return message["data"].decode()


async def test_each_write_publishes_a_change_message(
    server: SettingsServer, client: Client, redis_client: aioredis.Redis
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(server.settings.settings_changed_channel)
    # The subscription is confirmed before the first write.
    confirmed = await pubsub.get_message(timeout=10)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    try:
        alice = client.as_("alice")
        await alice.PutConfig(put(config()))
        assert await _next_message(pubsub) == "alice:text"
        await alice.SetApiKey(set_key("sk-alice-vision", MULTIMODAL))
        assert await _next_message(pubsub) == "alice:multimodal"
        await alice.DeleteApiKey(settings_pb2.DeleteApiKeyRequest(backend_type=MULTIMODAL))
        assert await _next_message(pubsub) == "alice:multimodal"
        await alice.DeleteConfig(settings_pb2.DeleteConfigRequest(backend_type=TEXT))
        assert await _next_message(pubsub) == "alice:text"

        # A rejected write publishes nothing: the next message is the next good write's.
        err = await rpc_error(alice.PutConfig(put(config(IMAGE, "openai", "gpt-4o"))))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        await client.as_("bob").PutConfig(put(config(IMAGE, "stability", "core", mode=BYOK)))
        assert await _next_message(pubsub) == "bob:image"
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
