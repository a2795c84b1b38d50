"""Every reason a service can put in its status has its own answer at the gateway."""

from __future__ import annotations

import grpc
import pytest

from gateway.errors import BY_REASON, error_type, from_remote
from svc_common import errors as reasons
from svc_common.errors import REASONS, RemoteError


def test_every_declared_reason_is_mapped_and_only_those() -> None:
    assert set(BY_REASON) == REASONS
    # Each module-level reason constant is in REASONS: a new one cannot skip the gateway.
    declared = {
        value
        for name, value in vars(reasons).items()
        if name.isupper() and isinstance(value, str) and name != "DOMAIN"
    }
    assert declared == REASONS


@pytest.mark.parametrize("reason", sorted(REASONS))
@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    ],
)
def test_a_reason_gives_its_own_code_whatever_the_status(
    reason: str, code: grpc.StatusCode
) -> None:
    err = from_remote(RemoteError(code, "what to change", reason=reason), "text-svc")
    status, openai_code = BY_REASON[reason]
    assert err.code == openai_code
    assert openai_code == openai_code.lower() and " " not in openai_code
    if status is not None:
        assert err.status == status
    assert err.body()["error"]["type"] == error_type(err.status)
    assert err.message == "what to change"


def test_a_missing_byok_key_is_its_own_code() -> None:
    err = from_remote(
        RemoteError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "no API key set for text (byok): set one with PUT /api/settings/llm/text/api-key",
            reason=reasons.API_KEY_MISSING,
        ),
        "text-svc",
    )
    assert (err.status, err.code) == (400, "missing_api_key")
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_a_status_without_a_reason_keeps_the_code_name() -> None:
    err = from_remote(RemoteError(grpc.StatusCode.FAILED_PRECONDITION, "no"), "text-svc")
    assert (err.status, err.code) == (400, "failed_precondition")
