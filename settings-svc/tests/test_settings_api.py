"""Configs through the real gRPC server: round trips, defaults, versions, isolation, bad input."""

from __future__ import annotations

import asyncio

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
    put,
    rpc_error,
    set_key,
)

from grpc_stubs.settings.v1 import settings_pb2
from settings_svc.server import SettingsServer

pytestmark = pytest.mark.timeout(60)


async def _rows(database_url: str, user: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        configs = await conn.fetchval(
            "SELECT count(*) FROM settings.backend_configs WHERE user_id = $1", user
        )
        keys = await conn.fetchval(
            "SELECT count(*) FROM settings.api_keys WHERE user_id = $1", user
        )
        return configs, keys
    finally:
        await conn.close()


async def test_unsaved_configs_show_defaults_for_members_and_non_members(client: Client) -> None:
    member = await client.as_("m1", member=True).GetConfigs(settings_pb2.GetConfigsRequest())
    non_member = await client.as_("n1", member=False).GetConfigs(settings_pb2.GetConfigsRequest())

    assert [c.backend_type for c in member.configs] == [TEXT, MULTIMODAL, IMAGE]
    text, multimodal, image = member.configs
    assert (text.provider, text.model, text.mode, text.version) == (
        "openai",
        "gpt-4o-mini",
        MEMBER,
        0,
    )
    assert text.temperature == pytest.approx(0.7)
    assert (multimodal.provider, multimodal.model, multimodal.mode) == ("openai", "gpt-4o", MEMBER)
    # The image presets offer member mode (issue 11); image-svc's own switch is the gate.
    assert (image.provider, image.model, image.mode) == ("openai", "gpt-image-2", MEMBER)
    assert not image.HasField("temperature")
    assert not text.api_key.is_set
    assert [c.mode for c in non_member.configs] == [BYOK, BYOK, BYOK]


async def test_put_then_get_round_trip(client: Client) -> None:
    alice = client.as_("alice")
    saved = await alice.PutConfig(
        put(
            config(
                TEXT,
                "anthropic",
                "claude-3-5-sonnet-latest",
                temperature=0.3,
                mode=MEMBER,
                options={"max_tokens": "512", "system": "Be brief.\nAnswer in French."},
            ),
            expected_version=0,
        )
    )
    assert saved.version > 0 and saved.updated_at > 0

    got = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert got == saved
    assert (got.provider, got.model, got.mode) == ("anthropic", "claude-3-5-sonnet-latest", MEMBER)
    assert got.temperature == pytest.approx(0.3)
    assert dict(got.options) == {"max_tokens": "512", "system": "Be brief.\nAnswer in French."}

    # The other backend types stay at their defaults.
    every = await alice.GetConfigs(settings_pb2.GetConfigsRequest())
    assert every.configs[0] == saved
    assert every.configs[1].version == 0


async def test_unspecified_mode_defaults_by_membership(client: Client) -> None:
    saved = await client.as_("nm", member=False).PutConfig(put(config(mode=0)))
    assert saved.mode == BYOK
    saved = await client.as_("mm", member=True).PutConfig(put(config(mode=0)))
    assert saved.mode == MEMBER


async def test_versions_increase_and_stale_versions_conflict(client: Client) -> None:
    alice = client.as_("alice")
    first = await alice.PutConfig(put(config(model="gpt-4o"), expected_version=0))
    second = await alice.PutConfig(put(config(model="gpt-4o-mini"), expected_version=first.version))
    assert second.version > first.version

    err = await rpc_error(
        alice.PutConfig(put(config(model="gpt-4.1"), expected_version=first.version))
    )
    assert err.code == grpc.StatusCode.ABORTED
    assert err.reason == "VERSION_CONFLICT"
    assert str(second.version) in err.message
    # 0 means "never saved": a saved config conflicts.
    err = await rpc_error(alice.PutConfig(put(config(), expected_version=0)))
    assert err.code == grpc.StatusCode.ABORTED
    # -1 skips the check (the legacy single-config body).
    forced = await alice.PutConfig(put(config(model="gpt-4.1"), expected_version=-1))
    assert forced.model == "gpt-4.1"


async def test_deleted_config_never_reuses_a_version(client: Client) -> None:
    alice = client.as_("alice")
    first = await alice.PutConfig(put(config(), expected_version=0))
    await alice.DeleteConfig(settings_pb2.DeleteConfigRequest(backend_type=TEXT))
    again = await alice.PutConfig(put(config(), expected_version=0))
    # A client still holding the first version cannot overwrite the new config.
    assert again.version != first.version
    err = await rpc_error(alice.PutConfig(put(config(), expected_version=first.version)))
    assert err.code == grpc.StatusCode.ABORTED


@pytest.mark.parametrize("rounds", [5])
async def test_concurrent_puts_with_the_same_version_exactly_one_wins(
    client: Client, rounds: int
) -> None:
    alice = client.as_("alice")
    version = 0
    for round_ in range(rounds):
        results = await asyncio.gather(
            alice.PutConfig(put(config(model="gpt-4o"), expected_version=version)),
            alice.PutConfig(put(config(model="gpt-4o-mini"), expected_version=version)),
            alice.PutConfig(put(config(model="gpt-4.1"), expected_version=version)),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, settings_pb2.BackendConfig)]
        losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(winners) == 1, f"round {round_}: {results}"
        assert [e.code() for e in losers] == [grpc.StatusCode.ABORTED] * 2
        current = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
        assert current == winners[0]
        version = current.version


async def test_delete_config_restores_defaults_and_keeps_the_key(client: Client) -> None:
    alice = client.as_("alice")
    await alice.PutConfig(
        put(config(provider="anthropic", model="claude-3-5-haiku-latest", mode=BYOK))
    )
    await alice.SetApiKey(set_key("anthropic-key-0001"))
    await alice.DeleteConfig(settings_pb2.DeleteConfigRequest(backend_type=TEXT))

    got = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert (got.provider, got.version) == ("openai", 0)
    assert got.api_key.is_set and got.api_key.provider == "anthropic"

    await alice.DeleteApiKey(settings_pb2.DeleteApiKeyRequest(backend_type=TEXT))
    got = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert not got.api_key.is_set


async def test_api_key_is_write_only_with_hint_and_fingerprint(client: Client) -> None:
    alice = client.as_("alice")
    info = await alice.SetApiKey(set_key("  sk-test-abcdefgh1234  "))
    assert (info.is_set, info.hint, info.provider) == (True, "…1234", "openai")
    assert len(info.fingerprint) == 12
    got = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert got.api_key == info
    assert "abcdefgh" not in str(got)


async def test_set_api_key_defaults_to_the_current_provider(client: Client) -> None:
    alice = client.as_("alice")
    await alice.PutConfig(put(config(MULTIMODAL, "anthropic", "claude-3-5-sonnet-latest")))
    info = await alice.SetApiKey(set_key("key-for-anthropic", MULTIMODAL))
    assert info.provider == "anthropic"
    info = await alice.SetApiKey(set_key("key-for-stability", IMAGE, provider="stability"))
    assert info.provider == "stability"


async def test_users_are_isolated(client: Client, database_url: str) -> None:
    alice, bob = client.as_("alice"), client.as_("bob")
    await alice.PutConfig(
        put(config(provider="anthropic", model="claude-3-5-haiku-latest", mode=BYOK))
    )
    await alice.SetApiKey(set_key("alice-secret-key-9999"))

    bobs = await bob.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert (bobs.provider, bobs.version, bobs.api_key.is_set) == ("openai", 0, False)
    # Bob's deletes touch only Bob's rows.
    await bob.DeleteApiKey(settings_pb2.DeleteApiKeyRequest(backend_type=TEXT))
    await bob.DeleteConfig(settings_pb2.DeleteConfigRequest(backend_type=TEXT))
    assert await _rows(database_url, "alice") == (1, 1)
    # A request without a user is refused.
    err = await rpc_error(
        client.stub.GetConfigs(
            settings_pb2.GetConfigsRequest(),
            metadata=(("authorization", client.as_()._metadata[0][1]),),
        )
    )
    assert err.code == grpc.StatusCode.UNAUTHENTICATED


async def test_list_presets(client: Client) -> None:
    alice = client.as_()
    every = await alice.ListPresets(settings_pb2.ListPresetsRequest())
    text = await alice.ListPresets(settings_pb2.ListPresetsRequest(backend_type=TEXT))
    assert {p.backend_type for p in every.presets} == {TEXT, MULTIMODAL, IMAGE}
    assert [p.provider for p in text.presets] == [
        "openai",
        "anthropic",
        "ollama",
        "lmstudio",
        "vllm",
    ]
    openai, anthropic, ollama = text.presets[:3]
    assert (openai.default_model, openai.temperature_max, openai.member_allowed) == (
        "gpt-4o-mini",
        2.0,
        True,
    )
    assert (anthropic.default_model, anthropic.temperature_max) == ("claude-3-5-haiku-latest", 1.0)
    assert (ollama.api_style, ollama.member_allowed, ollama.user_base_url_allowed) == (
        "ollama",
        False,
        True,
    )
    images = await alice.ListPresets(settings_pb2.ListPresetsRequest(backend_type=IMAGE))
    assert [p.provider for p in images.presets] == [
        "openai",
        "stability",
        "automatic1111",
        "comfyui",
        "openai_compatible",
    ]
    # OpenAI retired DALL-E and gpt-image-1 (issue 11): their shapes live on for compatible servers.
    assert list(images.presets[0].models) == ["gpt-image-2", "gpt-image-2-2026-04-21"]
    assert images.presets[0].api_style == "dalle"
    assert list(images.presets[4].models) == ["dall-e-3", "dall-e-2"]
    assert images.presets[4].api_style == "dalle"


async def test_operator_preset_changes_are_picked_up_on_reload(
    server: SettingsServer, client: Client, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE settings.provider_presets SET models = models || '{gpt-5}' "
            "WHERE provider = 'openai' AND backend_type = 'text'"
        )
    finally:
        await conn.close()
    alice = client.as_()
    err = await rpc_error(alice.PutConfig(put(config(model="gpt-5"))))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    await server.reload_presets()
    assert (await alice.PutConfig(put(config(model="gpt-5")))).model == "gpt-5"


BAD_CONFIGS = [
    pytest.param(config(backend_type=0), "backend_type", id="unspecified-backend-type"),
    pytest.param(config(backend_type=9), "backend_type", id="unknown-backend-type"),
    pytest.param(config(provider=""), "provider", id="no-provider"),
    pytest.param(
        config(provider="stability", model="core"), "provider", id="image-provider-for-text"
    ),
    pytest.param(config(provider="openai'; DROP TABLE x; --"), "provider", id="sql-in-provider"),
    pytest.param(config(model="dall-e-3"), "model", id="model-not-offered"),
    pytest.param(config(model="gpt-4o\x00"), "model", id="nul-in-model"),
    pytest.param(
        config(provider="ollama", model="llama\n3", mode=BYOK), "model", id="newline-model"
    ),
    pytest.param(config(provider="ollama", model="x" * 257, mode=BYOK), "model", id="long-model"),
    pytest.param(config(temperature=2.5), "temperature", id="temperature-above"),
    pytest.param(config(temperature=-0.1), "temperature", id="temperature-below"),
    pytest.param(config(temperature=float("nan")), "temperature", id="temperature-nan"),
    pytest.param(
        config(provider="anthropic", model="claude-3-5-haiku-latest", temperature=1.5),
        "temperature",
        id="anthropic-temperature-above-1",
    ),
    pytest.param(
        config(IMAGE, "openai", "gpt-image-2", temperature=0.5, mode=BYOK),
        "temperature",
        id="image-temp",
    ),
    pytest.param(config(mode=7), "mode", id="unknown-mode"),
    pytest.param(
        config(options={f"k{i}": "v" for i in range(33)}), "options", id="too-many-options"
    ),
    pytest.param(config(options={"bad key": "v"}), "options", id="bad-option-name"),
    pytest.param(config(options={"k": "v" * 1025}), "options", id="long-option"),
    pytest.param(config(options={"k": "a\x07b"}), "options", id="control-char-option"),
    pytest.param(
        config(base_url="https://93.184.215.14/v1"),
        "base_url",
        id="base-url-not-allowed-for-openai",
    ),
    # Member mode: a fallback runs on the platform's key, so only an offered model (issue 7).
    pytest.param(
        config(options={"fallback": "gpt-4.5-preview"}), "options.fallback", id="fallback-unoffered"
    ),
    pytest.param(
        config(options={"fallback": "openai:o1-pro"}), "options.fallback", id="fallback-unoffered-2"
    ),
    pytest.param(
        config(options={"fallback": "anthropic:claude-opus-4-20250514"}),
        "options.fallback",
        id="fallback-another-provider",
    ),
]

BAD_BASE_URLS = [
    "http://127.0.0.1:11434",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1:8000/v1",
    "http://localhost:11434",
    "http://[::1]:11434",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://metadata.google.internal/",
    "http://192.168.1.20:1234/v1",
    "http://100.100.100.200/",
    "ftp://93.184.215.14/",
    "file:///etc/passwd",
    "http://user:pw@93.184.215.14/",
    "http://no-such-host.invalid/",
    "http:///nohost",
    # IPv6 transition spellings of loopback and metadata addresses (issue 7, item 8)
    "http://[::127.0.0.1]/",
    "http://[::7f00:1]:11434",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[64:ff9b:1::a9fe:a9fe]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "http://0177.0.0.1:11434",
]


@pytest.mark.parametrize(("bad", "param"), BAD_CONFIGS)
async def test_bad_configs_are_rejected_and_nothing_is_written(
    client: Client, database_url: str, bad: settings_pb2.BackendConfig, param: str
) -> None:
    err = await rpc_error(client.as_("alice").PutConfig(put(bad)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.param == param
    assert await _rows(database_url, "alice") == (0, 0)


@pytest.mark.parametrize("base_url", BAD_BASE_URLS)
async def test_base_urls_to_private_addresses_are_rejected(
    client: Client, database_url: str, base_url: str
) -> None:
    bad = config(provider="ollama", model="llama3.1", mode=BYOK, base_url=base_url)
    err = await rpc_error(client.as_("alice").PutConfig(put(bad)))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "base_url"), err
    assert await _rows(database_url, "alice") == (0, 0)


@pytest.mark.parametrize(
    "base_url",
    ["https://93.184.215.14/v1/", "http://ollama.internal:11434", "http://127.0.0.2:11434"],
)
async def test_public_and_allow_listed_base_urls_are_accepted(
    client: Client, base_url: str
) -> None:
    saved = await client.as_("alice").PutConfig(
        put(
            config(
                provider="ollama", model="llama3.1:8b-instruct-q4_K_M", mode=BYOK, base_url=base_url
            )
        )
    )
    assert saved.base_url == base_url.rstrip("/")
    assert saved.model == "llama3.1:8b-instruct-q4_K_M"


async def test_member_mode_needs_a_member_and_a_preset_that_offers_it(
    client: Client, database_url: str
) -> None:
    err = await rpc_error(client.as_("nm", member=False).PutConfig(put(config(mode=MEMBER))))
    assert (err.code, err.reason) == (grpc.StatusCode.PERMISSION_DENIED, "MEMBERSHIP_REQUIRED")
    assert "byok" in err.message
    err = await rpc_error(
        client.as_("m", member=True).PutConfig(put(config(provider="ollama", model="llama3.1")))
    )
    assert (err.code, err.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MEMBER_MODE_NOT_OFFERED",
    )
    err = await rpc_error(
        client.as_("m", member=True).PutConfig(
            put(config(IMAGE, "openai_compatible", "dall-e-3", mode=MEMBER))
        )
    )
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert await _rows(database_url, "nm") == (0, 0)
    assert await _rows(database_url, "m") == (0, 0)


@pytest.mark.parametrize(
    ("api_key", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("k" * 10 * 1024, "longer than 4096"),
        ("sk-abc\x00def", "printable ASCII"),
        ("sk-abc\ndef", "printable ASCII"),
        ("sk-abc\x1b[31mdef", "printable ASCII"),
        ("sk-abc def", "printable ASCII"),
        ("sk-clé-ünïcode", "printable ASCII"),
    ],
)
async def test_bad_api_keys_are_rejected_without_echoing_them(
    client: Client, database_url: str, api_key: str, why: str
) -> None:
    err = await rpc_error(client.as_("alice").SetApiKey(set_key(api_key)))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "api_key")
    assert why in err.message
    if api_key.strip():
        assert api_key.strip()[:6] not in err.message
    assert await _rows(database_url, "alice") == (0, 0)


async def test_api_key_for_a_provider_not_offered_is_rejected(
    client: Client, database_url: str
) -> None:
    err = await rpc_error(client.as_("alice").SetApiKey(set_key("key-1234", IMAGE, "anthropic")))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "provider")
    assert await _rows(database_url, "alice") == (0, 0)


async def test_sql_metacharacters_are_stored_verbatim(client: Client, database_url: str) -> None:
    nasty = "'); DROP TABLE settings.api_keys; -- \" \\ %_ $1"
    user = "robert'); DROP TABLE settings.backend_configs; --"
    actor = client.as_(user)
    saved = await actor.PutConfig(put(config(options={"note": nasty})))
    await actor.SetApiKey(set_key("key-'\";--%_\\$1"))
    assert saved.options["note"] == nasty
    got = await actor.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert got.options["note"] == nasty and got.api_key.hint == "…_\\$1"
    assert await _rows(database_url, user) == (1, 1)


async def test_expected_version_below_minus_one_is_invalid(client: Client) -> None:
    err = await rpc_error(client.as_().PutConfig(put(config(), expected_version=-2)))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "expected_version")


async def test_a_member_fallback_must_be_an_offered_model(client: Client) -> None:
    alice = client.as_("alice")
    err = await rpc_error(alice.PutConfig(put(config(options={"fallback": "gpt-4.5-preview"}))))
    assert (err.code, err.param) == (grpc.StatusCode.INVALID_ARGUMENT, "options.fallback")
    assert "gpt-4o-mini, gpt-4o, gpt-4.1" in err.message
    assert "gpt-4.5-preview" not in err.message

    offered = await alice.PutConfig(put(config(options={"fallback": "openai:gpt-4o-mini"})))
    assert offered.options["fallback"] == "openai:gpt-4o-mini"
    # BYOK: the user's own key and money, so any model of theirs.
    byok = await alice.PutConfig(put(config(mode=BYOK, options={"fallback": "gpt-4.5-preview"})))
    assert byok.options["fallback"] == "gpt-4.5-preview"
