"""Encryption of users' provider keys at rest: AES-256-GCM under a rotating list of master keys.

Each ciphertext is bound to its row by associated data (user id, backend type, provider), so a
ciphertext copied to another row does not decrypt. The id of the master key that encrypted a row is
stored beside it; the first listed master key encrypts, any listed one decrypts. A row's displayed
fingerprint is an HMAC under a key derived from that same master key (KeyRing.fingerprint).

Nothing here ever puts a user's key (or a master key) in a message, log line or exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from settings_svc.environment import Settings

log = logging.getLogger(__name__)

NONCE_BYTES = 12
# HKDF label of the fingerprint keys: a fixed, distinct label, so a fingerprint key is never the
# encryption key and no separate secret has to be configured, kept and rotated.
FINGERPRINT_KEY_INFO = b"settings-svc api key fingerprint v1"
FINGERPRINT_HEX_CHARS = 12
MAX_API_KEY_CHARS = 4096
_KEY_ID = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
# Printable ASCII without spaces: every provider key format fits, and nothing can smuggle a
# control character or header-splitting byte into an upstream request.
_API_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")

# Only for environment == "development": a fixed, public key (data survives restarts).
_DEV_KEY_ID = "dev"
_DEV_KEY = hashlib.sha256(b"settings-svc development key: never use outside development").digest()


class KeyConfigError(RuntimeError):
    """SETTINGS_SVC_ENCRYPTION_KEYS is missing or malformed (never quotes key material)."""


class InvalidApiKey(ValueError):
    """A user-supplied key that cannot be stored; the message says why without quoting the key."""


class UndecryptableKey(Exception):
    """A stored ciphertext that no listed master key opens for this row."""

    def __init__(self, key_id: str, *, unknown_key_id: bool) -> None:
        self.key_id = key_id
        self.unknown_key_id = unknown_key_id
        why = "its master key id is not configured" if unknown_key_id else "authentication failed"
        super().__init__(f"stored API key does not decrypt (master key id {key_id!r}: {why})")


@dataclass(frozen=True, slots=True)
class EncryptedKey:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def normalize_api_key(raw: str) -> str:
    """The key as it will be stored: surrounding whitespace removed, then checked."""
    key = raw.strip()
    if not key:
        raise InvalidApiKey("api_key is empty: send the key, or delete it with DeleteApiKey")
    if len(key) > MAX_API_KEY_CHARS:
        raise InvalidApiKey(f"api_key is longer than {MAX_API_KEY_CHARS} characters")
    if not _API_KEY_CHARS.match(key):
        raise InvalidApiKey(
            "api_key may contain only printable ASCII characters, "
            "without spaces or control characters"
        )
    return key


def key_hint(key: str) -> str:
    return "…" + key[-4:]


def associated_data(user_id: str, backend_type: str, provider: str) -> bytes:
    return f"{user_id}|{backend_type}|{provider}".encode()


class KeyRing:
    """The master keys: `newest_id` encrypts; every listed key decrypts."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyConfigError("no encryption key configured")
        self._aead = {key_id: AESGCM(secret) for key_id, secret in keys}
        if len(self._aead) != len(keys):
            raise KeyConfigError("SETTINGS_SVC_ENCRYPTION_KEYS lists a key id twice")
        self._fingerprint_keys = {
            key_id: HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=FINGERPRINT_KEY_INFO
            ).derive(secret)
            for key_id, secret in keys
        }
        self.newest_id = keys[0][0]
        self.key_ids = tuple(key_id for key_id, _ in keys)

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: list[tuple[str, bytes]] = []
        for position, item in enumerate(part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID.match(key_id):
                raise KeyConfigError(
                    f"SETTINGS_SVC_ENCRYPTION_KEYS entry {position + 1} must be `keyid:base64`, "
                    "keyid of 1-32 letters, digits, _ or -"
                )
            try:
                secret = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise KeyConfigError(f"encryption key {key_id!r} is not valid base64") from None
            if len(secret) != 32:
                raise KeyConfigError(f"encryption key {key_id!r} must decode to 32 bytes (AES-256)")
            keys.append((key_id, secret))
        return cls(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        spec = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
        if spec.strip():
            return cls.parse(spec)
        if settings.environment == "development":
            log.warning(
                "SETTINGS_SVC_ENCRYPTION_KEYS is not set: using the fixed development key; "
                "stored API keys are NOT protected"
            )
            return cls([(_DEV_KEY_ID, _DEV_KEY)])
        raise KeyConfigError(
            "SETTINGS_SVC_ENCRYPTION_KEYS is required outside development: "
            "set it to `keyid:<base64 of 32 random bytes>` (e.g. `k1:$(openssl rand -base64 32)`)"
        )

    def encrypt(self, plaintext: str, aad: bytes) -> EncryptedKey:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aead[self.newest_id].encrypt(nonce, plaintext.encode(), aad)
        return EncryptedKey(self.newest_id, nonce, ciphertext)

    def fingerprint(self, key_id: str, user_id: str, api_key: str) -> str:
        """What a user sees to tell their keys apart: HMAC-SHA256 of (user id, key), truncated.

        Keyed, so a database reader cannot confirm a guessed key from it (a plain hash of a key
        can be checked against any guess); the user id in the input gives two users' equal keys
        different fingerprints, so rows cannot be matched across users either.

        The MAC key is derived from the master key that encrypts the row (`key_id`, stored beside
        it), not from a separate secret: nothing new to configure or lose, and fingerprint and
        ciphertext can only be read together. The price: `rotate-keys` re-encrypts a row under
        the newest master key and recomputes its fingerprint, so a fingerprint changes once per
        rotation (docs/configuration.md says so).
        """
        mac_key = self._fingerprint_keys.get(key_id)
        if mac_key is None:
            raise UndecryptableKey(key_id, unknown_key_id=True)
        user = user_id.encode()
        # Length-prefixed, so no (user id, key) pair can be spelt as another.
        message = len(user).to_bytes(4, "big") + user + api_key.encode()
        digest = hmac.new(mac_key, message, hashlib.sha256).hexdigest()
        return digest[:FINGERPRINT_HEX_CHARS]

    def decrypt(self, key_id: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> str:
        aead = self._aead.get(key_id)
        if aead is None:
            raise UndecryptableKey(key_id, unknown_key_id=True)
        try:
            return aead.decrypt(nonce, ciphertext, aad).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise UndecryptableKey(key_id, unknown_key_id=False) from None
