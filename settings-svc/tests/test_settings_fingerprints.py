"""Key fingerprints are keyed (issue 7, item 12): an HMAC of (user, key) under a key derived from
the master key, so equal keys of two users differ and a database reader cannot confirm a guess.
Fingerprints stored unkeyed before are dropped by migration and computed again, keyed, on read."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from settings_test_support import (
    BYOK,
    MULTIMODAL,
    TEXT,
    Client,
    config,
    new_master_key,
    put,
    running,
    set_key,
)

from grpc_stubs.settings.v1 import settings_pb2
from settings_svc.__main__ import run_rotate_keys
from settings_svc.environment import Settings
from settings_svc.keystore import KeyRing, associated_data
from settings_svc.migrate import MIGRATIONS_DIR
from settings_svc.rotation import rotate_keys
from settings_svc.store import create_pool
from svc_common.migrations import apply_migrations

pytestmark = pytest.mark.timeout(60)

API_KEY = "sk-the-same-key-for-everyone-0123"


def unkeyed_hashes(api_key: str, user_id: str) -> set[str]:
    """Every plain hash a reader could try: of the key alone and of the user and key together."""
    inputs = [
        api_key,
        user_id + api_key,
        f"{user_id}|{api_key}",
        f"{user_id}:{api_key}",
        f"{user_id}\x00{api_key}",
    ]
    found = set()
    for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "blake2b"):
        for text in inputs:
            digest = hashlib.new(name, text.encode()).hexdigest()
            found.update({digest[:12], digest[-12:]})
    return found


async def _rows(database_url: str) -> dict[tuple[str, str], asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM settings.api_keys")
        return {(r["user_id"], r["backend_type"]): r for r in rows}
    finally:
        await conn.close()


async def _execute(database_url: str, query: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(query)
    finally:
        await conn.close()


def test_a_fingerprint_is_keyed_by_the_master_key_and_the_user() -> None:
    ring = KeyRing.parse(new_master_key("k1"))
    alice = ring.fingerprint("k1", "alice", API_KEY)
    assert len(alice) == 12 and int(alice, 16) >= 0
    assert ring.fingerprint("k1", "alice", API_KEY) == alice  # stable
    assert ring.fingerprint("k1", "bob", API_KEY) != alice
    assert ring.fingerprint("k1", "alice", API_KEY + "x") != alice
    # Another server secret, another fingerprint: without the secret nothing can be checked.
    assert KeyRing.parse(new_master_key("k1")).fingerprint("k1", "alice", API_KEY) != alice
    assert alice not in unkeyed_hashes(API_KEY, "alice")
    # The user id is length-prefixed: ("ab", "c…") and ("a", "bc…") are different inputs.
    assert ring.fingerprint("k1", "ab", "c-key") != ring.fingerprint("k1", "a", "bc-key")


async def test_equal_keys_of_two_users_have_different_fingerprints(
    client: Client, database_url: str
) -> None:
    alice, bob = client.as_("alice", member=False), client.as_("bob", member=False)
    alice_info = await alice.SetApiKey(set_key(API_KEY))
    bob_info = await bob.SetApiKey(set_key(API_KEY))
    assert alice_info.fingerprint != bob_info.fingerprint
    for info, user in ((alice_info, "alice"), (bob_info, "bob")):
        assert len(info.fingerprint) == 12
        assert info.fingerprint not in unkeyed_hashes(API_KEY, user)

    stored = await _rows(database_url)
    assert stored["alice", "text"]["fingerprint"] == alice_info.fingerprint
    assert stored["bob", "text"]["fingerprint"] == bob_info.fingerprint


async def test_a_fingerprint_is_stable_across_reads_and_backend_types(client: Client) -> None:
    alice = client.as_("alice", member=False)
    info = await alice.SetApiKey(set_key(API_KEY))
    assert info.fingerprint not in unkeyed_hashes(API_KEY, "alice")
    await alice.PutConfig(put(config(mode=BYOK)))
    for _ in range(2):
        got = await alice.GetConfig(settings_pb2.GetConfigRequest(backend_type=TEXT))
        assert got.api_key.fingerprint == info.fingerprint
        configs = await alice.GetConfigs(settings_pb2.GetConfigsRequest())
        assert configs.configs[0].api_key.fingerprint == info.fingerprint
    # The same key of the same user is recognisably the same key in another slot.
    other = await alice.SetApiKey(set_key(API_KEY, MULTIMODAL, provider="openai"))
    assert other.fingerprint == info.fingerprint


async def test_unkeyed_fingerprints_are_dropped_and_computed_keyed_on_the_next_read(
    make_settings: Callable[..., Settings], database_url: str, master_key: str, tmp_path: Path
) -> None:
    # A database as the previous release left it: migrations up to 0002, unkeyed fingerprints.
    for sql in sorted(MIGRATIONS_DIR.glob("*.sql"))[:2]:
        shutil.copy(sql, tmp_path / sql.name)
    ring = KeyRing.parse(master_key)
    old_fingerprint = hashlib.sha256(API_KEY.encode()).hexdigest()[:12]
    conn = await asyncpg.connect(database_url)
    try:
        assert await apply_migrations(conn, "settings", tmp_path) == [
            "0001_schema.sql",
            "0002_seed_presets.sql",
        ]
        for user in ("alice", "bob"):
            sealed = ring.encrypt(API_KEY, associated_data(user, "text", "openai"))
            await conn.execute(
                "INSERT INTO settings.api_keys (user_id, backend_type, provider, key_id, nonce,"
                " ciphertext, hint, fingerprint) VALUES ($1, 'text', 'openai', $2, $3, $4, $5, $6)",
                user,
                sealed.key_id,
                sealed.nonce,
                sealed.ciphertext,
                "…0123",
                old_fingerprint,
            )
    finally:
        await conn.close()

    async with running(make_settings()) as srv:
        # The migration has already removed what a reader could test guesses against.
        stored = await _rows(database_url)
        assert {r["fingerprint"] for r in stored.values()} == {""}
        client = Client(srv.port)
        try:
            got = await client.as_("alice").GetConfig(
                settings_pb2.GetConfigRequest(backend_type=TEXT)
            )
            configs = await client.as_("bob").GetConfigs(settings_pb2.GetConfigsRequest())
        finally:
            await client.close()
    alice_fp, bob_fp = got.api_key.fingerprint, configs.configs[0].api_key.fingerprint
    assert alice_fp == ring.fingerprint(ring.newest_id, "alice", API_KEY)
    assert bob_fp == ring.fingerprint(ring.newest_id, "bob", API_KEY)
    assert old_fingerprint not in (alice_fp, bob_fp) and alice_fp != bob_fp
    stored = await _rows(database_url)
    assert (stored["alice", "text"]["fingerprint"], stored["bob", "text"]["fingerprint"]) == (
        alice_fp,
        bob_fp,
    )


async def test_rotation_recomputes_fingerprints_under_the_new_master_key(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    key_a, key_b = new_master_key("A"), new_master_key("B")
    async with running(make_settings(encryption_keys=key_a)) as srv:
        client = Client(srv.port)
        try:
            before = await client.as_("alice", member=False).SetApiKey(set_key(API_KEY))
            await client.as_("bob", member=False).SetApiKey(set_key(API_KEY))
        finally:
            await client.close()
    both = make_settings(encryption_keys=f"{key_b},{key_a}")
    assert await run_rotate_keys(both) == 0
    ring = KeyRing.from_settings(both)
    stored = await _rows(database_url)
    assert {r["key_id"] for r in stored.values()} == {"B"}
    after = stored["alice", "text"]["fingerprint"]
    assert after == ring.fingerprint("B", "alice", API_KEY) != before.fingerprint
    assert stored["bob", "text"]["fingerprint"] == ring.fingerprint("B", "bob", API_KEY)

    # A row already under the newest key but without a fingerprint (as after the migration).
    await _execute(
        database_url, "UPDATE settings.api_keys SET fingerprint = '' WHERE user_id = 'bob'"
    )
    pool = await create_pool(both)
    try:
        result = await rotate_keys(pool, ring)
    finally:
        await pool.close()
    assert (result.rotated, result.failed, result.fingerprinted) == (0, 0, 1)
    stored = await _rows(database_url)
    assert stored["bob", "text"]["fingerprint"] == ring.fingerprint("B", "bob", API_KEY)
    assert stored["alice", "text"]["fingerprint"] == after

    async with running(make_settings(encryption_keys=key_b)) as srv:
        client = Client(srv.port)
        try:
            got = await client.as_("alice").GetConfig(
                settings_pb2.GetConfigRequest(backend_type=TEXT)
            )
        finally:
            await client.close()
    assert got.api_key.fingerprint == after
