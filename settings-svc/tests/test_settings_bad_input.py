"""Input no Python client can build but any other gRPC client can send: a lone surrogate (UTF-16
`\\ud800`, bytes ED A0 80 in "UTF-8") in a string field. protobuf refuses to parse it; the caller
gets INVALID_ARGUMENT that says what to change, not UNKNOWN with a Python exception's name, and
nothing is stored. (A Python client cannot even serialise such a string: the gateway refuses it
at HTTP; well-formed but unstorable text, such as NUL, is refused by this service's validators.)
"""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest
from settings_test_support import (
    SERVICE_SECRET,
    TEXT,
    Client,
    config,
    put,
    set_key,
)

from grpc_stubs.settings.v1 import settings_pb2
from svc_common.auth import mint_service_token, outgoing_metadata

pytestmark = pytest.mark.timeout(60)

# What a non-Python client sends for "\ud800": the surrogate encoded as if it were a character.
LONE_SURROGATE = b"\xed\xa0\x80"
MARK = b"MARKMARK"  # replaced in the serialised request by the bytes under test


def _with_bytes(message: Any, raw: bytes) -> bytes:
    encoded: bytes = message.SerializeToString()
    assert encoded.count(MARK) == 1
    return encoded.replace(MARK, raw)


async def _raw_call(client: Client, method: str, body: bytes) -> grpc.aio.AioRpcError:
    call = client.channel.unary_unary(
        f"/settings.v1.SettingsService/{method}",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    metadata = outgoing_metadata(
        mint_service_token(SERVICE_SECRET, "gateway"), user_id="alice", is_member=True
    )
    try:
        await call(body, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError(f"{method} with malformed UTF-8 succeeded")


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("PutConfig", put(config(provider="MARKMARK"))),
        ("PutConfig", put(config(TEXT, "ollama", "llama3-MARKMARK"))),
        ("PutConfig", put(config(options={"seed": "MARKMARK"}))),
        ("PutConfig", put(config(TEXT, "ollama", "llama3", base_url="http://MARKMARK.example"))),
        ("SetApiKey", set_key("sk-MARKMARK")),
        ("SetApiKey", set_key("sk-abcd", provider="MARKMARK")),
    ],
)
async def test_a_lone_surrogate_in_any_string_is_invalid_argument(
    client: Client, database_url: str, method: str, message: Any
) -> None:
    err = await _raw_call(client, method, _with_bytes(message, LONE_SURROGATE))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.details() or ""
    assert "UTF-8" in details and "surrogate" in details
    assert "DecodeError" not in details and "Exception" not in details

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT (SELECT count(*) FROM settings.backend_configs)"
            " + (SELECT count(*) FROM settings.api_keys)"
        )
    finally:
        await conn.close()
    assert stored == 0
    got = await client.as_("alice").GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
    assert got.version == 0 and not got.api_key.is_set
