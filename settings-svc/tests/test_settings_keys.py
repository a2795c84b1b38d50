"""The key store: master keys from the environment, AES-GCM bound to its row, and rotation."""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable

import asyncpg
import pytest
from settings_test_support import (
    IMAGE,
    MULTIMODAL,
    TEXT,
    Client,
    new_master_key,
    resolve,
    running,
    set_key,
)

from settings_svc.__main__ import run_rotate_keys
from settings_svc.environment import Settings
from settings_svc.keystore import (
    InvalidApiKey,
    KeyConfigError,
    KeyRing,
    UndecryptableKey,
    associated_data,
    normalize_api_key,
)
from settings_svc.rotation import rotate_keys
from settings_svc.server import create_server
from settings_svc.store import create_pool

pytestmark = pytest.mark.timeout(60)


def test_key_ring_encrypts_with_the_first_key_and_decrypts_with_any() -> None:
    old, new = new_master_key("old"), new_master_key("new")
    aad = associated_data("alice", "text", "openai")
    sealed_old = KeyRing.parse(old).encrypt("sk-secret", aad)
    ring = KeyRing.parse(f"{new}, {old}")
    sealed_new = ring.encrypt("sk-secret", aad)
    assert (sealed_old.key_id, sealed_new.key_id, ring.newest_id) == ("old", "new", "new")
    assert (
        ring.decrypt(sealed_old.key_id, sealed_old.nonce, sealed_old.ciphertext, aad) == "sk-secret"
    )
    assert (
        ring.decrypt(sealed_new.key_id, sealed_new.nonce, sealed_new.ciphertext, aad) == "sk-secret"
    )
    # A fresh nonce every time: the same key never gives the same ciphertext.
    assert ring.encrypt("sk-secret", aad).nonce != sealed_new.nonce


@pytest.mark.parametrize(
    "other_row",
    [("bob", "text", "openai"), ("alice", "image", "openai"), ("alice", "text", "anthropic")],
)
def test_a_ciphertext_only_opens_for_its_own_row(other_row: tuple[str, str, str]) -> None:
    ring = KeyRing.parse(new_master_key("k"))
    sealed = ring.encrypt("sk-secret", associated_data("alice", "text", "openai"))
    with pytest.raises(UndecryptableKey) as caught:
        ring.decrypt(sealed.key_id, sealed.nonce, sealed.ciphertext, associated_data(*other_row))
    assert "sk-secret" not in str(caught.value)


def test_an_unknown_master_key_id_is_reported() -> None:
    sealed = KeyRing.parse(new_master_key("gone")).encrypt("x", b"aad")
    with pytest.raises(UndecryptableKey, match="not configured"):
        KeyRing.parse(new_master_key("k")).decrypt("gone", sealed.nonce, sealed.ciphertext, b"aad")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "keyid:base64"),
        ("bad id:" + base64.b64encode(os.urandom(32)).decode(), "keyid:base64"),
        ("k1:not-base64!!", "not valid base64"),
        ("k1:" + base64.b64encode(os.urandom(16)).decode(), "32 bytes"),
        (f"{new_master_key('k1')},{new_master_key('k1')}", "twice"),
    ],
    # Fixed ids: the specs are random, and every test worker must collect the same names.
    ids=["no-colon", "bad-id", "not-base64", "short-key", "id-twice"],
)
def test_malformed_master_keys_are_refused_without_quoting_them(spec: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as caught:
        KeyRing.parse(spec)
    secret_part = spec.partition(":")[2][:12]
    if len(secret_part) >= 8:
        assert secret_part not in str(caught.value)


def test_no_master_key_is_refused_outside_development(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    for environment in ("production", "test"):
        with pytest.raises(KeyConfigError, match="required outside development"):
            create_server(make_settings(environment=environment, encryption_keys=None))
    with caplog.at_level(logging.WARNING):
        ring = KeyRing.from_settings(make_settings(environment="development", encryption_keys=None))
    assert ring.newest_id == "dev"
    assert "NOT protected" in caplog.text


def test_api_key_normalisation() -> None:
    assert normalize_api_key("  sk-abc\t\n") == "sk-abc"
    assert normalize_api_key("k" * 4096) == "k" * 4096
    with pytest.raises(InvalidApiKey):
        normalize_api_key("k" * 4097)
    for bad in ("", "  ", "sk\x7fabc", "sk\u00e9", "sk abc"):
        with pytest.raises(InvalidApiKey):
            normalize_api_key(bad)


async def _key_ids(database_url: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT user_id, backend_type, key_id FROM settings.api_keys")
        return {(r["user_id"], r["backend_type"]): r["key_id"] for r in rows}
    finally:
        await conn.close()


KEYS = {
    ("alice", TEXT): "sk-alice-text-0001",
    ("alice", MULTIMODAL): "sk-alice-vision-0002",
    ("bob", TEXT): "sk-bob-text-0003",
    ("carol", IMAGE): "sk-carol-image-0004",
}


async def _resolve_all(port: int) -> dict[tuple[str, int], str]:
    client = Client(port)
    try:
        service = {TEXT: "text-svc", MULTIMODAL: "multimodal-svc", IMAGE: "image-svc"}
        return {
            (user, bt): (
                await client.as_(user, service=service[bt], member=False).ResolveConfig(resolve(bt))
            ).api_key
            for user, bt in KEYS
        }
    finally:
        await client.close()


async def test_rotation_moves_every_key_to_the_newest_master_key(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    key_a, key_b = new_master_key("A"), new_master_key("B")
    async with running(make_settings(encryption_keys=key_a)) as srv:
        client = Client(srv.port)
        try:
            for (user, bt), api_key in KEYS.items():
                await client.as_(user, member=False).SetApiKey(set_key(api_key, bt))
        finally:
            await client.close()
    assert set((await _key_ids(database_url)).values()) == {"A"}

    # New key first, old one still listed: everything still decrypts, then rotate.
    both = make_settings(encryption_keys=f"{key_b},{key_a}", batch_size=2)
    async with running(both) as srv:
        assert await _resolve_all(srv.port) == KEYS
        assert await run_rotate_keys(both) == 0
        assert set((await _key_ids(database_url)).values()) == {"B"}
        pool = await create_pool(both)
        try:
            again = await rotate_keys(pool, KeyRing.from_settings(both))
        finally:
            await pool.close()
        assert (again.rotated, again.failed) == (0, 0)

    # The old key can now be dropped.
    async with running(make_settings(encryption_keys=key_b)) as srv:
        assert await _resolve_all(srv.port) == KEYS


async def test_rotation_reports_rows_it_cannot_decrypt_and_carries_on(
    make_settings: Callable[..., Settings], database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    key_a, key_b, lost = new_master_key("A"), new_master_key("B"), new_master_key("lost")
    async with running(make_settings(encryption_keys=lost)) as srv:
        client = Client(srv.port)
        try:
            await client.as_("zed").SetApiKey(set_key("sk-under-a-lost-master-key"))
        finally:
            await client.close()
    async with running(make_settings(encryption_keys=key_a)) as srv:
        client = Client(srv.port)
        try:
            await client.as_("amy").SetApiKey(set_key("sk-under-a"))
        finally:
            await client.close()

    with caplog.at_level(logging.INFO):
        assert await run_rotate_keys(make_settings(encryption_keys=f"{key_b},{key_a}")) == 1
    assert await _key_ids(database_url) == {("amy", "text"): "B", ("zed", "text"): "lost"}
    assert "1 rotated, 1 failed" in caplog.text
    assert "sk-under" not in caplog.text
