"""ListModels and CheckStatus: the caller's provider, checked live with the caller's credential."""

from __future__ import annotations

import pytest

from grpc_stubs.text.v1 import text_pb2

from .conftest import OPENAI_KEY, StartTextSvc

pytestmark = pytest.mark.timeout(30)


async def test_openai_models_are_the_configured_ones_the_key_can_reach(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(models="gpt-4o-mini,gpt-4o,gpt-retired")
    answer = await svc.stub.ListModels(
        text_pb2.ListModelsRequest(), metadata=svc.metadata(), timeout=10
    )
    assert [(m.id, m.provider) for m in answer.models] == [
        ("gpt-4o-mini", "openai"),
        ("gpt-4o", "openai"),
    ]
    # The live list is cached: a second call does not ask the provider again.
    await svc.stub.ListModels(text_pb2.ListModelsRequest(), metadata=svc.metadata(), timeout=10)
    assert [(r.path, r.key) for r in svc.openai.requests] == [("/v1/models", OPENAI_KEY)]


async def test_ollama_lists_what_the_server_has(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(default_provider="ollama", default_model="llama3:latest")
    answer = await svc.stub.ListModels(
        text_pb2.ListModelsRequest(), metadata=svc.metadata(), timeout=10
    )
    ids = [m.id for m in answer.models]
    assert ids[0] == "llama3:latest"
    assert set(ids) == {"llama3.2:latest", "llama3:latest", "qwen2.5:0.5b", "llava:latest"}


async def test_a_failing_live_list_falls_back_to_the_configured_models(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(
        default_provider="anthropic", default_model="claude-haiku-4-5", models="claude-haiku-4-5"
    )
    svc.anthropic.state.set_keys(set())  # every key refused
    answer = await svc.stub.ListModels(
        text_pb2.ListModelsRequest(), metadata=svc.metadata(), timeout=10
    )
    assert [m.id for m in answer.models] == ["claude-haiku-4-5"]


async def test_check_status_is_ok_for_a_working_provider(start_text_svc: StartTextSvc) -> None:
    svc = await start_text_svc(default_provider="anthropic", default_model="claude-haiku-4-5")
    answer = await svc.stub.CheckStatus(
        text_pb2.CheckStatusRequest(), metadata=svc.metadata(), timeout=10
    )
    assert (answer.ok, answer.provider, answer.model, answer.detail) == (
        True,
        "anthropic",
        "claude-haiku-4-5",
        "",
    )
    assert answer.latency_ms >= 0


async def test_check_status_says_what_failed_without_the_key(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc()
    svc.openai.state.set_keys(set())
    answer = await svc.stub.CheckStatus(
        text_pb2.CheckStatusRequest(), metadata=svc.metadata(), timeout=10
    )
    assert not answer.ok
    assert "openai rejected the API key" in answer.detail
    assert OPENAI_KEY[-4:] not in answer.detail


async def test_check_status_of_an_unconfigured_member_provider(
    start_text_svc: StartTextSvc,
) -> None:
    svc = await start_text_svc(openai_api_key=None)
    answer = await svc.stub.CheckStatus(
        text_pb2.CheckStatusRequest(), metadata=svc.metadata(), timeout=10
    )
    assert not answer.ok
    assert "operator has not configured its key" in answer.detail
    assert svc.openai.requests == []
