"""ResolveConfig: who may call it, what credential it returns, and how it fails."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from settings_test_support import (
    BYOK,
    IMAGE,
    MEMBER,
    MULTIMODAL,
    TEXT,
    Client,
    config,
    database_contains,
    put,
    resolve,
    rpc_error,
    set_key,
)

from grpc_stubs.settings.v1 import settings_pb2

pytestmark = pytest.mark.timeout(60)


async def test_only_model_services_may_resolve(client: Client) -> None:
    await client.as_("alice").SetApiKey(set_key("alice-key-0001"))
    err = await rpc_error(client.as_("alice", service="gateway").ResolveConfig(resolve()))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "alice-key" not in err.message
    # Services that are not callers of settings-svc at all are turned away before the handler.
    err = await rpc_error(client.as_("alice", service="billing-svc").ResolveConfig(resolve()))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    for service in ("text-svc", "multimodal-svc", "image-svc"):
        resolved = await client.as_("alice", service=service, member=False).ResolveConfig(resolve())
        assert resolved.api_key == "alice-key-0001"


async def test_byok_resolves_to_exactly_the_users_key(client: Client) -> None:
    alice = client.as_("alice", member=False)
    saved = await alice.PutConfig(
        put(
            config(
                TEXT,
                "anthropic",
                "claude-3-5-sonnet-latest",
                temperature=0.2,
                mode=BYOK,
                options={"max_tokens": "256"},
            )
        )
    )
    await alice.SetApiKey(set_key("  sk-ant-api03-AbC_dEf-123456789  "))

    resolved = await client.as_("alice", service="text-svc", member=False).ResolveConfig(resolve())
    assert resolved.WhichOneof("credential") == "api_key"
    assert resolved.api_key == "sk-ant-api03-AbC_dEf-123456789"
    assert (resolved.provider, resolved.api_style, resolved.model) == (
        "anthropic",
        "anthropic",
        "claude-3-5-sonnet-latest",
    )
    assert resolved.temperature == pytest.approx(0.2)
    assert resolved.mode == BYOK
    assert dict(resolved.options) == {"max_tokens": "256"}
    assert resolved.config_version == saved.version
    assert "claude-3-5-haiku-latest" in resolved.models
    assert (resolved.temperature_min, resolved.temperature_max) == (0.0, 1.0)
    assert resolved.base_url == ""


async def test_member_mode_resolves_to_the_platform_key(client: Client) -> None:
    # Unsaved: the default (openai, member for a member).
    resolved = await client.as_("m", service="text-svc", member=True).ResolveConfig(resolve())
    assert resolved.WhichOneof("credential") == "platform_key_ref"
    assert (resolved.platform_key_ref, resolved.model, resolved.config_version) == (
        "openai",
        "gpt-4o-mini",
        0,
    )
    assert resolved.temperature == pytest.approx(0.7)

    await client.as_("m").PutConfig(
        put(config(MULTIMODAL, "anthropic", "claude-3-5-sonnet-latest", mode=MEMBER))
    )
    await client.as_("m").SetApiKey(set_key("own-key-unused", MULTIMODAL))
    resolved = await client.as_("m", service="multimodal-svc").ResolveConfig(resolve(MULTIMODAL))
    assert resolved.platform_key_ref == "anthropic"
    assert not resolved.api_key


async def test_member_mode_after_membership_ended_fails(client: Client) -> None:
    await client.as_("m", member=True).PutConfig(put(config(mode=MEMBER)))
    err = await rpc_error(
        client.as_("m", service="text-svc", member=False).ResolveConfig(resolve())
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MEMBERSHIP_REQUIRED")
    assert "byok" in err.message


async def test_byok_without_a_key_says_how_to_set_one(client: Client) -> None:
    err = await rpc_error(
        client.as_("nm", service="text-svc", member=False).ResolveConfig(resolve())
    )
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "API_KEY_MISSING")
    assert err.message == (
        "no API key set for text (byok): set one with PUT /api/settings/llm/text/api-key"
    )
    err = await rpc_error(
        client.as_("nm", service="image-svc", member=False).ResolveConfig(resolve(IMAGE))
    )
    assert "PUT /api/settings/llm/image/api-key" in err.message


async def test_a_key_for_another_provider_is_not_used(client: Client) -> None:
    alice = client.as_("alice", member=False)
    await alice.SetApiKey(set_key("openai-key-0001"))
    await alice.PutConfig(
        put(config(provider="anthropic", model="claude-3-5-haiku-latest", mode=BYOK))
    )
    err = await rpc_error(client.as_("alice", service="text-svc").ResolveConfig(resolve()))
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "API_KEY_MISSING")
    assert "openai" in err.message and "anthropic" in err.message


async def test_local_servers_need_no_key(client: Client) -> None:
    alice = client.as_("alice", member=False)
    await alice.PutConfig(
        put(
            config(
                provider="ollama",
                model="qwen2.5:7b",
                mode=BYOK,
                base_url="http://ollama.internal:11434",
            )
        )
    )
    resolved = await client.as_("alice", service="text-svc").ResolveConfig(resolve())
    assert resolved.WhichOneof("credential") is None
    assert (resolved.provider, resolved.api_style, resolved.model) == (
        "ollama",
        "ollama",
        "qwen2.5:7b",
    )
    assert resolved.base_url == "http://ollama.internal:11434"
    assert list(resolved.models) == []  # any model is allowed for a local server
    # A key, when set, is passed on.
    await alice.SetApiKey(set_key("local-proxy-token"))
    resolved = await client.as_("alice", service="text-svc").ResolveConfig(resolve())
    assert resolved.api_key == "local-proxy-token"


async def test_one_user_never_resolves_anothers_key(client: Client) -> None:
    await client.as_("alice").SetApiKey(set_key("alice-only-key"))
    err = await rpc_error(
        client.as_("bob", service="text-svc", member=False).ResolveConfig(resolve())
    )
    assert err.reason == "API_KEY_MISSING"


async def test_a_ciphertext_moved_to_another_users_row_does_not_decrypt(
    client: Client, database_url: str
) -> None:
    await client.as_("alice").SetApiKey(set_key("alice-key-to-steal"))
    await client.as_("mallory").SetApiKey(set_key("mallory-own-key"))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            UPDATE settings.api_keys AS m
            SET key_id = a.key_id, nonce = a.nonce, ciphertext = a.ciphertext
            FROM settings.api_keys AS a
            WHERE m.user_id = 'mallory' AND a.user_id = 'alice' AND a.backend_type = m.backend_type
            """
        )
    finally:
        await conn.close()

    mallory = client.as_("mallory", service="text-svc", member=False)
    err = await rpc_error(mallory.ResolveConfig(resolve()))
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "API_KEY_UNREADABLE")
    assert "set it again" in err.message and "alice-key" not in err.message
    # The service carries on; setting the key again repairs it.
    await client.as_("mallory").SetApiKey(set_key("mallory-new-key"))
    assert (await mallory.ResolveConfig(resolve())).api_key == "mallory-new-key"
    alice = await client.as_("alice", service="text-svc", member=False).ResolveConfig(resolve())
    assert alice.api_key == "alice-key-to-steal"


async def test_stored_rows_hold_no_plaintext_key(client: Client, database_url: str) -> None:
    key = "sk-proj-PlaintextCanary-7f3a9c"
    await client.as_("alice").SetApiKey(set_key(key))
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM settings.api_keys WHERE user_id = 'alice'")
        assert row is not None
        assert len(row["nonce"]) == 12
        assert key.encode() not in row["ciphertext"]
        assert row["hint"] == "…" + key[-4:]
        for value in row.values():
            assert key not in str(value)
            if isinstance(value, bytes):
                assert key.encode() not in value
        # Nothing anywhere in the database holds it, in text or in bytes.
        assert await database_contains(conn, key) == []
    finally:
        await conn.close()


async def test_get_config_shows_key_info_not_the_key(client: Client) -> None:
    await client.as_("alice").SetApiKey(set_key("sk-visible-nowhere-4321"))
    got = await client.as_("alice").GetConfigs(settings_pb2.GetConfigsRequest())
    assert got.configs[0].api_key.hint == "…4321"
    assert "sk-visible" not in str(got)
