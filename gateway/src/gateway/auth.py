"""User authentication: JWT bearer tokens (HS256 with a secret or RS256 with a public key).

Claims: `sub` is the user id, `exp` is required, `member` (bool) says whether the user may use
member mode. The user id reaches the backends only from here, never from a request body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from cachetools import LRUCache
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.environment import Settings
from gateway.errors import ApiError

MAX_USER_ID_LENGTH = 128
_MAX_TOKEN_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class User:
    id: str
    member: bool


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401,
        message,
        code="invalid_api_key",
        headers={"www-authenticate": 'Bearer realm="api", error="invalid_token"'},
    )


class TokenVerifier:
    """Verifies user JWTs; remembers verified ones (by token string, until their exp), the
    least recently used dropped first beyond `token_cache_size`."""

    def __init__(self, settings: Settings) -> None:
        self._key: Any
        if settings.jwt_hs256_secret is not None:
            self._key = settings.jwt_hs256_secret.get_secret_value().encode()
            self._algorithm = "HS256"
        else:
            assert settings.jwt_rs256_public_key is not None
            pem = settings.jwt_rs256_public_key.strip().replace("\\n", "\n")
            # Loaded once: PyJWT refuses an asymmetric key object for HMAC, which also rules
            # out the HS256-signed-with-the-public-key confusion.
            self._key = load_pem_public_key(pem.encode())
            self._algorithm = "RS256"
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        # Each token expires at its own `exp`, so the expiry is checked on read rather than
        # by a cache-wide TTL. None: caching off (size 0).
        self._cache: LRUCache[str, tuple[User, float]] | None = (
            LRUCache(maxsize=settings.token_cache_size) if settings.token_cache_size > 0 else None
        )
        self._jwt = jwt.PyJWT()

    def verify(self, token: str) -> User:
        cache = self._cache
        if cache is None:
            return self._decode(token)[0]
        cached = cache.get(token)
        if cached is not None:
            if cached[1] > time.time():
                return cached[0]
            del cache[token]
        user, exp = self._decode(token)
        cache[token] = (user, exp)
        return user

    def _decode(self, token: str) -> tuple[User, float]:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise unauthorized("the bearer token is too long")
        try:
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the bearer token has expired; sign in again") from None
        except jwt.InvalidTokenError:
            raise unauthorized("the bearer token is not valid") from None
        sub = claims["sub"]
        if (
            not isinstance(sub, str)
            or not sub
            or len(sub) > MAX_USER_ID_LENGTH
            or not (sub.isascii() and sub.isprintable())
        ):
            raise unauthorized("the bearer token's subject is not a valid user id")
        member = claims.get("member", False)
        if not isinstance(member, bool):
            raise unauthorized("the bearer token's 'member' claim must be a boolean")
        return User(id=sub, member=member), float(claims["exp"])

    def authenticate(self, authorization: str | None) -> User:
        """The user named by an Authorization header value, or a 401 ApiError."""
        if not authorization:
            raise unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        return self.verify(token)


def mint_token(
    settings_or_secret: Settings | str,
    user: str,
    *,
    member: bool = True,
    ttl_s: float = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """An HS256 user token (for `make token`, the dev stack and tests)."""
    if isinstance(settings_or_secret, Settings):
        if settings_or_secret.jwt_hs256_secret is None:
            raise ValueError("these settings verify RS256 tokens: mint them with the private key")
        secret = settings_or_secret.jwt_hs256_secret.get_secret_value()
        issuer = issuer or settings_or_secret.jwt_issuer
        audience = audience or settings_or_secret.jwt_audience
    else:
        secret = settings_or_secret
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "member": member, "iat": now, "exp": now + int(ttl_s)}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    claims.update(extra_claims or {})
    return jwt.encode(claims, secret, algorithm="HS256")
