"""User JWTs: only the configured algorithm and key; the user id comes only from the token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import TokenVerifier, mint_token, unauthorized
from gateway.environment import Settings
from gateway.errors import ApiError

from .conftest import JWT_SECRET, Backends

MODELS = "/api/text-proxy/v1/models"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict) -> str:
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{_b64(orjson.dumps(claims))}."


def claims(**overrides) -> dict:
    # Minted when the module is collected, so valid for a day: a long suite must not expire them
    # before their test runs and turn a claim check into an expiry check.
    return {"sub": "alice", "member": True, "exp": int(time.time()) + 86_400} | overrides


def signed(algorithm: str = "HS256", **overrides) -> str:
    return "Bearer " + jwt.encode(claims(**overrides), JWT_SECRET, algorithm=algorithm)


@pytest.fixture
def rsa_keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem.decode()


async def get_models(url: str, authorization: str | None) -> httpx.Response:
    headers = {"authorization": authorization} if authorization is not None else {}
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.get(MODELS, headers=headers)


def assert_401(response: httpx.Response, message_part: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert message_part in error["message"]


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic YWxpY2U6cHc=", "must be 'Bearer <token>'"),
        ("Bearer", "must be 'Bearer <token>'"),
        ("Bearer not-a-jwt", "not valid"),
        (f"Bearer {mint_token(JWT_SECRET, 'alice', ttl_s=-10)}", "expired"),
        (f"Bearer {mint_token('another-secret-that-is-long-enough-000', 'alice')}", "not valid"),
        (f"Bearer {unsigned_token(claims())}", "not valid"),
        (signed(exp=None), "not valid"),
        ("Bearer " + jwt.encode({"sub": "alice"}, JWT_SECRET, algorithm="HS256"), "not valid"),
        (signed(sub=""), "subject"),
        (signed(sub="x" * 129), "subject"),
        (signed(sub="al\nice"), "subject"),
        (signed(member="yes"), "member"),
        (signed(algorithm="HS512"), "not valid"),
    ],
    ids=[
        "missing", "empty", "basic", "bearer-without-token", "garbage", "expired", "forged",
        "alg-none", "no-exp", "no-exp-no-member", "empty-sub", "long-sub", "control-char-sub",
        "member-not-bool", "hs512",
    ],
)  # fmt: skip
async def test_rejected_tokens(
    start_gateway, backends: Backends, authorization: str | None, message: str
) -> None:
    async with start_gateway(backends.target) as url:
        assert_401(await get_models(url, authorization), message)
    assert backends.text.requests == []


async def test_member_claim_and_user_reach_the_backend(start_gateway, backends: Backends) -> None:
    async with start_gateway(backends.target) as url, httpx.AsyncClient(base_url=url) as client:
        for user, member in (("bob", False), ("carol", True)):
            token = mint_token(JWT_SECRET, user, member=member)
            body = {"messages": [{"role": "user", "content": "Hi"}], "user": "mallory"}
            response = await client.post(
                "/api/text-proxy/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {token}", "x-user-id": "mallory"},
            )
            assert response.status_code == 200
            _, who = backends.text.requests[-1]
            assert (who.user_id, who.is_member) == (user, member)


async def test_rs256_accepts_only_rs256_with_the_key(
    start_gateway, backends: Backends, rsa_keys: tuple[bytes, str]
) -> None:
    private_pem, public_pem = rsa_keys
    other_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = jwt.encode(claims(), private_pem, algorithm="RS256")
    wrong_key = jwt.encode(claims(), other_private, algorithm="RS256")
    # The classic confusion: HS256 "signed" with the public key as the HMAC secret.
    signing_input = (
        f"{_b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{_b64(orjson.dumps(claims()))}"
    )
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{_b64(mac)}"

    async with start_gateway(
        backends.target, jwt_hs256_secret=None, jwt_rs256_public_key=public_pem
    ) as url:
        assert (await get_models(url, f"Bearer {good}")).status_code == 200
        assert_401(await get_models(url, f"Bearer {wrong_key}"), "not valid")
        assert_401(await get_models(url, f"Bearer {confused}"), "not valid")
        assert_401(await get_models(url, f"Bearer {mint_token(JWT_SECRET, 'alice')}"), "not valid")
        assert_401(await get_models(url, f"Bearer {unsigned_token(claims())}"), "not valid")


async def test_issuer_and_audience_are_checked_when_configured(
    start_gateway, backends: Backends
) -> None:
    async with start_gateway(
        backends.target, jwt_issuer="https://auth.example", jwt_audience="gateway"
    ) as url:
        right = mint_token(JWT_SECRET, "alice", issuer="https://auth.example", audience="gateway")
        wrong_aud = mint_token(JWT_SECRET, "alice", issuer="https://auth.example", audience="x")
        no_iss = mint_token(JWT_SECRET, "alice", audience="gateway")
        assert (await get_models(url, f"Bearer {right}")).status_code == 200
        assert_401(await get_models(url, f"Bearer {wrong_aud}"), "not valid")
        assert_401(await get_models(url, f"Bearer {no_iss}"), "not valid")


def test_settings_need_exactly_one_verification_key(rsa_keys: tuple[bytes, str]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Settings()
    with pytest.raises(ValueError, match="exactly one"):
        Settings(jwt_hs256_secret=JWT_SECRET, jwt_rs256_public_key=rsa_keys[1])
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(jwt_hs256_secret="short")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_JWT_HS256_SECRET", JWT_SECRET)
    monkeypatch.setenv("GATEWAY_TEXT_TARGET", "text-svc:50051")
    monkeypatch.setenv("GATEWAY_SERVICE_TOKEN", "gateway.abc")
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "1024")
    settings = Settings()
    assert settings.text_target == "text-svc:50051"
    assert settings.max_body_bytes == 1024
    assert settings.port == 8080
    monkeypatch.delenv("GATEWAY_SERVICE_TOKEN")
    with pytest.raises(ValueError, match="GATEWAY_SERVICE_TOKEN"):
        Settings()


def test_verified_tokens_are_cached_until_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(Settings(jwt_hs256_secret=JWT_SECRET, token_cache_size=2))
    tokens = [mint_token(JWT_SECRET, f"user{i}", ttl_s=60) for i in range(3)]
    assert [verifier.verify(token).id for token in tokens] == ["user0", "user1", "user2"]

    def decode_again(token: str) -> None:
        raise unauthorized("decoded again")

    monkeypatch.setattr(verifier, "_decode", decode_again)
    # Cached: not decoded again.
    assert verifier.verify(tokens[2]).id == "user2"
    # Bounded: the oldest went first.
    with pytest.raises(ApiError, match="decoded again"):
        verifier.verify(tokens[0])
    # Past its exp, a cached token is verified again (and so refused).
    now = time.time()
    monkeypatch.setattr("gateway.auth.time.time", lambda: now + 61)
    with pytest.raises(ApiError, match="decoded again"):
        verifier.verify(tokens[2])


def test_a_token_in_use_stays_cached_when_others_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cache drops the least recently used token, not the first one verified: an app's busy
    # user is not decoded again each time two new users sign in.
    verifier = TokenVerifier(Settings(jwt_hs256_secret=JWT_SECRET, token_cache_size=2))
    busy, quiet, new = (mint_token(JWT_SECRET, name, ttl_s=60) for name in ("busy", "q", "n"))
    verifier.verify(busy)
    verifier.verify(quiet)
    verifier.verify(busy)
    verifier.verify(new)

    def decode_again(token: str) -> None:
        raise unauthorized("decoded again")

    monkeypatch.setattr(verifier, "_decode", decode_again)
    assert verifier.verify(busy).id == "busy"
    with pytest.raises(ApiError, match="decoded again"):
        verifier.verify(quiet)


def test_no_cache_when_its_size_is_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(Settings(jwt_hs256_secret=JWT_SECRET, token_cache_size=0))
    token = mint_token(JWT_SECRET, "alice", ttl_s=60)
    assert verifier.verify(token).id == "alice"

    def decode_again(token: str) -> None:
        raise unauthorized("decoded again")

    monkeypatch.setattr(verifier, "_decode", decode_again)
    with pytest.raises(ApiError, match="decoded again"):
        verifier.verify(token)
