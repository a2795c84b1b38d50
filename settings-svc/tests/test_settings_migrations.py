"""Schema migrations from empty, concurrent start-up, the CLI, and the legacy carry-over."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

import asyncpg
import grpc
import pytest
from settings_test_support import (
    BYOK,
    MEMBER,
    TEXT,
    Client,
    config,
    database_contains,
    put,
    resolve,
    rpc_error,
    running,
)

from grpc_stubs.settings.v1 import settings_pb2
from settings_svc.__main__ import run_migrate
from settings_svc.environment import Settings
from settings_svc.server import create_server

pytestmark = pytest.mark.timeout(90)

MIGRATIONS = [
    "0001_schema.sql",
    "0002_seed_presets.sql",
    "0003_keyed_key_fingerprints.sql",
    "0004_image_presets.sql",
]


async def _fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_migrations_apply_from_an_empty_database(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    async with running(make_settings()):
        applied = await _fetch(
            database_url, "SELECT name FROM settings.schema_migrations ORDER BY name"
        )
        assert [r["name"] for r in applied] == MIGRATIONS
        presets = await _fetch(
            database_url,
            "SELECT backend_type, count(*) AS n FROM settings.provider_presets GROUP BY 1",
        )
        assert {r["backend_type"]: r["n"] for r in presets} == {
            "text": 5,
            "multimodal": 4,
            "image": 5,
        }


async def test_two_instances_starting_together_apply_each_migration_once(
    make_settings: Callable[..., Settings], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="svc_common.migrations")
    first, second = create_server(make_settings()), create_server(make_settings())
    try:
        await asyncio.gather(first.start(), second.start())
        for srv in (first, second):
            client = Client(srv.port)
            try:
                presets = await client.as_().ListPresets(settings_pb2.ListPresetsRequest())
                assert len(presets.presets) == 14
            finally:
                await client.close()
    finally:
        await asyncio.gather(first.stop(0), second.stop(0))
    applied = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("applied migration")
    ]
    assert sorted(applied) == [f"applied migration settings.{name}" for name in MIGRATIONS]
    rows = await _fetch(database_url, "SELECT name FROM settings.schema_migrations")
    assert len(rows) == len(MIGRATIONS)


def _cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTINGS_SVC_")}
    env.update(
        SETTINGS_SVC_DATABASE_URL=settings.database_url.get_secret_value(),
        SETTINGS_SVC_ENVIRONMENT=settings.environment,
    )
    if settings.encryption_keys is not None:
        env["SETTINGS_SVC_ENCRYPTION_KEYS"] = settings.encryption_keys.get_secret_value()
    env.update(extra)
    return env


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "settings_svc",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_migrate_command_is_idempotent(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings()
    code, out = await _cli(_cli_env(settings), "migrate")
    assert code == 0, out
    assert "0002_seed_presets.sql" in out
    code, out = await _cli(_cli_env(settings), "migrate")
    assert code == 0, out
    assert "none (up to date)" in out
    assert settings.encryption_keys is not None
    assert settings.encryption_keys.get_secret_value().split(":")[1] not in out


async def test_refuses_to_start_without_an_encryption_key_outside_development(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(environment="production")
    env = _cli_env(settings)
    del env["SETTINGS_SVC_ENCRYPTION_KEYS"]
    code, out = await _cli(env, "migrate")
    assert code == 2
    assert "SETTINGS_SVC_ENCRYPTION_KEYS is required outside development" in out


# --- legacy carry-over -----------------------------------------------------------------------

LEGACY_SCHEMA = """
CREATE TABLE public.user_preferences (
    user_id text PRIMARY KEY,
    llm_provider text,
    llm_model text,
    llm_temperature double precision,
    llm_api_key text NULL
)
"""

# user_id, provider, model, temperature, key
LEGACY_ROWS = [
    ("u1", "openai", "gpt-4o", 0.5, "sk-legacy-openai-u1-AAAA"),
    ("u2", "anthropic", "claude-3-opus-20240229", 0.9, None),
    ("u3", "OpenAI ", None, None, ""),
    ("u4", "cohere", "command-r", 0.3, "legacy-cohere-key-u4-BBBB"),
    ("u5", "anthropic", "claude-3-5-sonnet-latest", 1.7, "sk-ant-legacy-u5-CCCC"),
    ("u6", "ollama", "llama3:8b", 0.8, None),
    ("u7", "openai", "gpt-4o-mini", 0.1, "sk-legacy-u7-already-configured"),
]

# What each user's text config must be afterwards: provider, model, temperature, mode.
EXPECTED = {
    "u1": ("openai", "gpt-4o", 0.5, BYOK),
    "u2": ("anthropic", "claude-3-opus-20240229", 0.9, MEMBER),  # unknown model kept
    "u3": ("openai", "gpt-4o-mini", None, MEMBER),  # provider normalised, default model
    "u4": ("openai", "gpt-4o-mini", 0.3, BYOK),  # unknown provider: the default preset
    "u5": ("anthropic", "claude-3-5-sonnet-latest", 1.0, BYOK),  # clamped to the preset's range
    "u6": ("ollama", "llama3:8b", 0.8, BYOK),  # no member mode for local servers
    "u7": ("anthropic", "claude-3-5-haiku-latest", None, BYOK),  # saved before the carry-over
}


async def test_legacy_preferences_carry_over_into_text_configs(
    make_settings: Callable[..., Settings], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings()
    # u7 saved a text config with the new service before the legacy rows were carried over.
    async with running(settings) as srv:
        client = Client(srv.port)
        try:
            await client.as_("u7").PutConfig(
                put(config(provider="anthropic", model="claude-3-5-haiku-latest", mode=BYOK))
            )
        finally:
            await client.close()

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(LEGACY_SCHEMA)
        await conn.executemany(
            "INSERT INTO public.user_preferences VALUES ($1, $2, $3, $4, $5)", LEGACY_ROWS
        )
    finally:
        await conn.close()

    # Two replicas starting at once, then the migrate command twice more: same result.
    first, second = create_server(settings), create_server(settings)
    await asyncio.gather(first.start(), second.start())
    await run_migrate(settings)
    await run_migrate(settings)
    try:
        client = Client(first.port)
        try:
            for user, (provider, model, temperature, mode) in EXPECTED.items():
                got = await client.as_(user, member=True).GetConfig(
                    settings_pb2.GetConfigRequest(backend_type=TEXT)
                )
                assert (got.provider, got.model, got.mode) == (provider, model, mode), user
                assert got.version > 0
                if temperature is None:
                    assert not got.HasField("temperature")
                else:
                    assert got.temperature == pytest.approx(temperature), user

            text_svc = {u: client.as_(u, service="text-svc", member=True) for u in EXPECTED}
            for user, key in [
                ("u1", "sk-legacy-openai-u1-AAAA"),
                ("u4", "legacy-cohere-key-u4-BBBB"),
                ("u5", "sk-ant-legacy-u5-CCCC"),
            ]:
                assert (await text_svc[user].ResolveConfig(resolve())).api_key == key
            assert (await text_svc["u2"].ResolveConfig(resolve())).platform_key_ref == "anthropic"
            # No saved temperature: the preset's default is what the model service gets.
            assert (await text_svc["u3"].ResolveConfig(resolve())).temperature == pytest.approx(0.7)
            assert (await text_svc["u6"].ResolveConfig(resolve())).WhichOneof("credential") is None
            # u7 kept the config they saved; their old key was encrypted (for its old provider).
            err = await rpc_error(text_svc["u7"].ResolveConfig(resolve()))
            assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "openai" in err.message
        finally:
            await client.close()
    finally:
        await asyncio.gather(first.stop(0), second.stop(0))

    conn = await asyncpg.connect(database_url)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM settings.backend_configs) AS configs,"
            " (SELECT count(*) FROM settings.api_keys) AS keys,"
            " (SELECT count(*) FROM public.user_preferences WHERE llm_api_key IS NOT NULL) AS plain"
        )
        assert dict(counts) == {"configs": 7, "keys": 4, "plain": 0}
        for _, _, _, _, key in LEGACY_ROWS:
            if key:
                assert await database_contains(conn, key) == []
                assert key not in caplog.text
    finally:
        await conn.close()
    assert "'cohere' is not a text provider" in caplog.text


async def test_a_replica_with_migrate_on_start_off_leaves_the_schema_to_the_migrate_command(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    # deploy/k8s runs `python -m settings_svc migrate` as a Job and starts replicas with
    # SETTINGS_SVC_MIGRATE_ON_START=false: a replica never changes the schema itself.
    settings = make_settings(migrate_on_start=False)
    server = create_server(settings)
    with pytest.raises(asyncpg.UndefinedTableError):
        await server.start()  # no presets table: it refuses to serve instead of migrating
    assert await _fetch(database_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'settings'") == []

    await run_migrate(settings)
    async with running(settings) as srv:
        client = Client(srv.port)
        try:
            presets = await client.as_("alice").ListPresets(settings_pb2.ListPresetsRequest())
            assert presets.presets  # seeded by the migrate command
        finally:
            await client.close()
