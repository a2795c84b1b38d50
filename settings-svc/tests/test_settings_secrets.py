"""A user's key never shows up in a log line or an error, whatever path it takes."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator

import asyncpg
import grpc
import pytest
from settings_test_support import (
    TEXT,
    Client,
    new_master_key,
    resolve,
    rpc_error,
    running,
    set_key,
)

from settings_svc.__main__ import run_migrate, run_rotate_keys
from settings_svc.environment import Settings
from svc_common.logging import JsonFormatter

pytestmark = pytest.mark.timeout(60)

# Not shaped like an sk- key, so the log scrubber cannot be what hides it: our code must not log it.
PLANTED = "PLANTEDcanary7Q2xW9vR4tY8uI1oP"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The service's JSON log lines at DEBUG, as production would write them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("settings-svc"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def test_a_planted_key_never_reaches_logs_or_errors(
    make_settings: Callable[..., Settings],
    database_url: str,
    json_logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key_a, key_b = new_master_key("A"), new_master_key("B")
    errors: list[str] = []

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "CREATE TABLE public.user_preferences (user_id text PRIMARY KEY, llm_provider text,"
            " llm_model text, llm_temperature double precision, llm_api_key text NULL)"
        )
        await conn.execute(
            "INSERT INTO public.user_preferences VALUES ('legacy', 'mystery-ai', 'm', 0.5, $1)",
            PLANTED + "-legacy",
        )
    finally:
        await conn.close()

    async with running(make_settings(encryption_keys=key_a)) as srv:
        client = Client(srv.port)
        try:
            alice = client.as_("alice", member=False)
            await alice.SetApiKey(set_key(PLANTED))
            # Rejected keys that contain the planted one.
            for bad in (PLANTED + "\x00", PLANTED + " é", PLANTED * 400, PLANTED + "\n" + PLANTED):
                err = await rpc_error(alice.SetApiKey(set_key(bad, TEXT)))
                assert err.code == grpc.StatusCode.INVALID_ARGUMENT
                errors.append(f"{err.message} {err.reason} {err.param}")
            # Its row refuses to decrypt once moved to another user.
            await client.as_("mallory").SetApiKey(set_key("mallory-key"))
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(
                    "UPDATE settings.api_keys m SET nonce = a.nonce, ciphertext = a.ciphertext "
                    "FROM settings.api_keys a WHERE m.user_id = 'mallory' AND a.user_id = 'alice'"
                )
            finally:
                await conn.close()
            err = await rpc_error(
                client.as_("mallory", service="text-svc", member=False).ResolveConfig(resolve())
            )
            errors.append(err.message)
            # The gateway is refused; a model service gets it (in the response only).
            err = await rpc_error(alice.ResolveConfig(resolve()))
            errors.append(err.message)
            text_svc = client.as_("alice", service="text-svc", member=False)
            assert (await text_svc.ResolveConfig(resolve())).api_key == PLANTED
        finally:
            await client.close()

    rotated = make_settings(encryption_keys=f"{key_b},{key_a}")
    await run_rotate_keys(rotated)
    await run_migrate(rotated)

    for text in (json_logs.getvalue(), caplog.text, *errors):
        assert PLANTED not in text
        assert PLANTED[:12] not in text
    # Sanity: the logs did capture what happened.
    assert "set text API key" in json_logs.getvalue()
    assert "does not decrypt" in json_logs.getvalue()
