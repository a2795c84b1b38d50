"""The config seam without settings-svc: ResolvedConfig → TextConfig, the settings-change
watcher on real Redis pub/sub, and how a config becomes endpoints and a fallback."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis.asyncio as aioredis

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.settings.v1 import settings_pb2
from svc_common.auth import Caller
from svc_common.errors import FailedPrecondition
from text_svc.config_source import TextConfig, watch_settings_changes
from text_svc.environment import Settings
from text_svc.plan import Route, endpoint_for, fallback_route

pytestmark = pytest.mark.timeout(30)


def test_a_byok_config_carries_the_users_key_and_range() -> None:
    resolved = settings_pb2.ResolvedConfig(
        backend_type=common_pb2.BACKEND_TYPE_TEXT,
        provider="lmstudio",
        model="qwen2.5-7b",
        mode=common_pb2.MODE_BYOK,
        api_key="sk-user-key",
        base_url="http://10.0.0.5:1234/v1",
        temperature=0.3,
        temperature_min=0.0,
        temperature_max=1.5,
        options={"fallback": "qwen2.5-1.5b"},
        models=["qwen2.5-7b"],
    )
    config = TextConfig.from_proto(resolved)
    assert (config.provider, config.api_style, config.mode) == (
        "lmstudio",
        "openai_compatible",
        "byok",
    )
    assert (config.temperature, config.temperature_min, config.temperature_max) == (0.3, 0.0, 1.5)
    assert (config.api_key, config.fallback) == ("sk-user-key", "qwen2.5-1.5b")
    assert "sk-user-key" not in repr(config)

    endpoint = endpoint_for(config, Settings())
    assert (endpoint.base_url, endpoint.api_key) == ("http://10.0.0.5:1234/v1", "sk-user-key")


def test_a_member_config_uses_the_platform_key_it_names() -> None:
    resolved = settings_pb2.ResolvedConfig(
        provider="anthropic",
        api_style="anthropic",
        model="claude-haiku-4-5",
        mode=common_pb2.MODE_MEMBER,
        platform_key_ref="anthropic",
    )
    config = TextConfig.from_proto(resolved)
    assert config.temperature is None and config.temperature_max is None
    endpoint = endpoint_for(config, Settings(anthropic_api_key="sk-ant-platform"))
    assert (endpoint.base_url, endpoint.api_key) == ("https://api.anthropic.com", "sk-ant-platform")
    with pytest.raises(FailedPrecondition, match="operator has not configured its key"):
        endpoint_for(config, Settings())


def test_byok_without_a_key_says_to_add_one() -> None:
    config = TextConfig(provider="openai", api_style="openai", model="gpt-4o-mini", mode="byok")
    with pytest.raises(FailedPrecondition, match="add your key in settings"):
        endpoint_for(config, Settings())


@pytest.mark.parametrize(
    ("spec", "mode", "expected"),
    [
        ("gpt-4o", "member", ("openai", "gpt-4o")),
        ("openai:gpt-4o", "member", ("openai", "gpt-4o")),
        # Member mode: a config's fallback is another offered model of its own provider, never a
        # model the caller is not offered or another provider's (issue 7).
        ("gpt-4.1", "member", None),
        ("anthropic:claude-haiku-4-5", "member", None),
        ("openai:gpt-4o", "byok", ("openai", "gpt-4o")),
        ("gpt-4.1", "byok", ("openai", "gpt-4.1")),  # BYOK: the user's own key pays
        ("anthropic:claude-haiku-4-5", "byok", None),  # BYOK: the user's key is for openai only
        ("gpt-4o-mini", "member", None),  # the primary itself
    ],
)
def test_fallback_spec(spec: str, mode: str, expected: tuple[str, str] | None) -> None:
    settings = Settings(openai_api_key="sk-o", anthropic_api_key="sk-a")
    config = TextConfig(
        provider="openai",
        api_style="openai",
        model="gpt-4o-mini",
        models=("gpt-4o-mini", "gpt-4o"),
        mode=mode,
        api_key="sk-user" if mode == "byok" else "",
        fallback=spec,
    )
    primary = Route(endpoint_for(config, settings), "gpt-4o-mini")
    route = fallback_route(config, settings, primary)
    got = (route.provider, route.model) if route else None
    assert got == expected


def test_a_model_name_with_a_colon_is_not_a_provider() -> None:
    config = TextConfig(
        provider="ollama",
        api_style="ollama",
        model="llama3:latest",
        mode="member",
        fallback="llama3:8b",
    )
    settings = Settings()
    primary = Route(endpoint_for(config, settings), "llama3:latest")
    route = fallback_route(config, settings, primary)
    assert route is not None
    assert (route.provider, route.model) == ("ollama", "llama3:8b")


class RecordingSource:
    """A ConfigSource that records what the watcher tells it (our own seam, not a service)."""

    def __init__(self) -> None:
        self.cleared = asyncio.Event()
        self.invalidated: asyncio.Queue[str] = asyncio.Queue()

    async def resolve(self, who: Caller, timeout_s: float) -> TextConfig:
        raise NotImplementedError

    def invalidate(self, message: str) -> None:
        self.invalidated.put_nowait(message)

    def clear(self) -> None:
        self.cleared.set()

    async def aclose(self) -> None:
        pass


async def test_the_watcher_clears_on_subscribe_and_passes_messages_on(
    redis_client: aioredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    channel = f"{redis_prefix}settings-changed"
    source = RecordingSource()
    watcher_redis = aioredis.Redis.from_url(redis_url)
    watcher = asyncio.create_task(watch_settings_changes(watcher_redis, channel, source))
    try:
        await asyncio.wait_for(source.cleared.wait(), 5)  # subscribed: cache dropped
        await redis_client.publish(channel, "alice:text")
        await redis_client.publish(channel, "bob:*")
        assert await asyncio.wait_for(source.invalidated.get(), 5) == "alice:text"
        assert await asyncio.wait_for(source.invalidated.get(), 5) == "bob:*"
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await watcher_redis.aclose()


def test_the_operator_fallback_applies_when_the_config_names_none() -> None:
    settings = Settings(openai_api_key="sk-o", anthropic_api_key="sk-a", fallback="anthropic:c-1")
    config = TextConfig(provider="openai", api_style="openai", model="gpt-4o-mini", mode="member")
    primary = Route(endpoint_for(config, settings), "gpt-4o-mini")
    route = fallback_route(config, settings, primary)
    assert route is not None
    assert (route.provider, route.model, route.endpoint.api_key) == ("anthropic", "c-1", "sk-a")


def test_the_operator_fallback_in_member_mode_is_an_offered_model() -> None:
    settings = Settings(openai_api_key="sk-o", fallback="gpt-4.1")
    config = TextConfig(
        provider="openai",
        api_style="openai",
        model="gpt-4o-mini",
        models=("gpt-4o-mini", "gpt-4o"),
        mode="member",
    )
    primary = Route(endpoint_for(config, settings), "gpt-4o-mini")
    assert fallback_route(config, settings, primary) is None
    offered = Settings(openai_api_key="sk-o", fallback="gpt-4o")
    route = fallback_route(config, offered, primary)
    assert route is not None and (route.provider, route.model) == ("openai", "gpt-4o")
