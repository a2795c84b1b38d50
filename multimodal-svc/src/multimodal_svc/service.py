"""The multimodal.v1.MultimodalService servicer: one method per RPC, each a short story of
resolve config → plan → take in the images → hold → call the provider → usage event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
import orjson

from chat_codecs import Completion, Delta, Finish, ModelInfo, ToolCallDelta
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.multimodal.v1 import multimodal_pb2, multimodal_pb2_grpc
from grpc_stubs.text.v1 import text_pb2
from multimodal_svc.config_source import BACKEND_TYPE, ConfigSource
from multimodal_svc.environment import Settings
from multimodal_svc.intake import ImageIntake
from multimodal_svc.metering import NO_BALANCE, Metering, UsageRecord
from multimodal_svc.plan import (
    USER_CHOSEN_MODELS,
    Plan,
    correlation_id_for,
    endpoint_for,
    mint_request_id,
    plan_generation,
)
from multimodal_svc.providers import ProviderClients
from svc_common.auth import Caller, caller
from svc_common.deadlines import call_deadline, time_left
from svc_common.errors import ServiceError
from upstream import (
    AttemptPolicy,
    Attempts,
    Endpoint,
    ProviderError,
    Route,
    RouteFailed,
    StreamRelay,
    service_error,
)

log = logging.getLogger(__name__)

_DEADLINE_MARGIN_S = 0.05


class MultimodalService(multimodal_pb2_grpc.MultimodalServiceServicer):
    def __init__(
        self,
        settings: Settings,
        configs: ConfigSource,
        clients: ProviderClients,
        metering: Metering,
    ) -> None:
        self._settings = settings
        self._configs = configs
        self._clients = clients
        self._metering = metering
        self._intake = ImageIntake(settings)
        self._attempts = Attempts(
            clients,
            AttemptPolicy(
                first_output_timeout_s=settings.upstream_timeout_s,
                idle_timeout_s=settings.upstream_idle_timeout_s,
                max_retries=settings.max_retries,
                max_retry_wait_s=settings.max_retry_wait_s,
            ),
        )
        self._open_streams: set[StreamRelay] = set()  # in flight, for shutdown

    async def Generate(
        self, request: multimodal_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> multimodal_pb2.GenerateResponse:
        who, plan, deadline = await self._prepare(request, context)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        record = UsageRecord(who, plan, hold)
        outcome = "error"
        try:
            try:
                _, completion = await self._attempts.call(
                    (plan.route,),
                    deadline,
                    lambda client, route: client.complete(plan.call),
                    log_extra=_log_extra(plan),
                )
            except RouteFailed as err:
                raise service_error(err.error, err.route, plan.mode, BACKEND_TYPE) from None
            _count(record, completion)
            outcome = "success"
        except asyncio.CancelledError:
            outcome = "client_disconnect"
            raise
        finally:
            self._metering.finish(record, outcome)
        units = record.units()
        return multimodal_pb2.GenerateResponse(
            id=plan.request_id,
            model=plan.route.model,
            provider=plan.route.provider,
            content=completion.text,
            finish_reason=completion.finish_reason,
            usage=common_pb2.Usage(
                input_tokens=units.input_tokens, output_tokens=units.output_tokens
            ),
            created=int(time.time()),
            balance_micros=hold.balance_micros if hold else NO_BALANCE,
            tool_calls=[
                text_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments)
                for c in completion.tool_calls
            ],
            logprobs_json=orjson.dumps(completion.logprobs).decode() if completion.logprobs else "",
        )

    async def GenerateStream(
        self, request: multimodal_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[multimodal_pb2.GenerateStreamResponse]:
        who, plan, deadline = await self._prepare(request, context)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        record = UsageRecord(who, plan, hold)

        def publish(outcome: str) -> None:
            self._open_streams.discard(relay)
            self._metering.finish(record, outcome)

        relay = StreamRelay(publish)
        self._open_streams.add(relay)
        # A cancel while the generator waits at a yield (where grpc never resumes it) closes
        # the provider's connection at once and publishes the usage. types-grpcio types the
        # callback as a class no function matches; grpc calls any callable.
        context.add_done_callback(relay.end_if_abandoned)  # type: ignore[arg-type]
        outcome = "client_disconnect"
        try:
            try:
                relay.stream = stream = await self._attempts.open_stream(
                    (plan.route,),
                    deadline,
                    lambda client, route: client.stream(plan.call),
                    log_extra=_log_extra(plan),
                )
            except RouteFailed as err:
                outcome = "error"
                raise service_error(err.error, err.route, plan.mode, BACKEND_TYPE) from None
            yield relay.suspended(
                multimodal_pb2.GenerateStreamResponse(
                    start=multimodal_pb2.StreamStart(
                        id=plan.request_id,
                        model=plan.route.model,
                        provider=plan.route.provider,
                        created=int(time.time()),
                        balance_micros=hold.balance_micros if hold else NO_BALANCE,
                    )
                )
            )
            relay.resumed()
            try:
                async for event in stream:
                    if isinstance(event, Delta):
                        record.add_delta(event.text)
                        delta = multimodal_pb2.StreamDelta(content=event.text)
                        if event.logprobs:
                            delta.logprobs_json = orjson.dumps(event.logprobs).decode()
                        yield relay.suspended(multimodal_pb2.GenerateStreamResponse(delta=delta))
                        relay.resumed()
                    elif isinstance(event, ToolCallDelta):
                        record.add_delta(event.arguments)  # arguments are output too
                        call = text_pb2.ToolCallDelta(
                            index=event.index,
                            id=event.id,
                            name=event.name,
                            arguments=event.arguments,
                        )
                        yield relay.suspended(
                            multimodal_pb2.GenerateStreamResponse(
                                delta=multimodal_pb2.StreamDelta(tool_calls=[call])
                            )
                        )
                        relay.resumed()
                    elif isinstance(event, Finish):
                        record.usage = event.usage
                        units = record.units()
                        outcome = "success"
                        yield relay.suspended(
                            multimodal_pb2.GenerateStreamResponse(
                                finish=multimodal_pb2.StreamFinish(
                                    finish_reason=event.finish_reason,
                                    usage=common_pb2.Usage(
                                        input_tokens=units.input_tokens,
                                        output_tokens=units.output_tokens,
                                    ),
                                )
                            )
                        )
                        relay.resumed()
            except ProviderError as err:
                outcome = "upstream_error" if record.deltas else "error"
                raise service_error(err, plan.route, plan.mode, BACKEND_TYPE) from None
        finally:
            await relay.end(outcome)

    async def ListModels(
        self, request: multimodal_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> multimodal_pb2.ListModelsResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        endpoint = endpoint_for(config, self._settings)
        # Only the vision models the config offers; a local server's own list in full.
        models = [ModelInfo(m, config.provider) for m in (config.models or (config.model,)) if m]
        if config.api_style in USER_CHOSEN_MODELS:
            try:
                live = await self._list(endpoint, self._list_timeout(deadline))
            except (ProviderError, TimeoutError) as err:
                log.info("live model list of %s unavailable (%s)", config.provider, err)
            else:
                seen = {m.id for m in models}
                models += [m for m in live if m.id not in seen]
        return multimodal_pb2.ListModelsResponse(
            models=[
                multimodal_pb2.Model(id=m.id, provider=config.provider, owned_by=m.owned_by)
                for m in models
            ]
        )

    async def CheckStatus(
        self, request: multimodal_pb2.CheckStatusRequest, context: grpc.aio.ServicerContext
    ) -> multimodal_pb2.CheckStatusResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        response = multimodal_pb2.CheckStatusResponse(provider=config.provider, model=config.model)
        started = time.perf_counter()
        try:
            endpoint = endpoint_for(config, self._settings)
            await self._list(endpoint, self._list_timeout(deadline))
        except ServiceError as err:
            response.detail = err.message
        except ProviderError as err:
            route = Route(endpoint, config.model)
            response.detail = service_error(err, route, config.mode, BACKEND_TYPE).message
        except TimeoutError:
            response.detail = f"{config.provider} did not answer in time"
        else:
            response.ok = True
        response.latency_ms = round((time.perf_counter() - started) * 1000)
        return response

    async def _list(self, endpoint: Endpoint, timeout_s: float) -> list[ModelInfo]:
        lease = self._clients.acquire(endpoint)
        try:
            async with asyncio.timeout(timeout_s):
                return await lease.client.list_models()
        finally:
            self._clients.release(lease)

    async def _prepare(
        self, request: multimodal_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> tuple[Caller, Plan, float]:
        who = caller(context)
        who.require_user()
        correlation_id = correlation_id_for(request, who)
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        plan = plan_generation(request, config, self._settings, mint_request_id(), correlation_id)
        # Every image read, checked and normalised once, before the hold and any provider call.
        ready = await self._intake.prepare(plan.images, config.api_style)
        return who, plan.with_images(ready), deadline

    def _internal_timeout(self, deadline: float) -> float:
        return time_left(deadline, self._settings.internal_call_timeout_s)

    def _list_timeout(self, deadline: float) -> float:
        s = self._settings
        return time_left(deadline, s.upstream_connect_timeout_s + s.upstream_timeout_s)

    def abandon_open_streams(self) -> None:
        """Shutdown: publish what the streams grpc abandoned generated, and close them."""
        for relay in list(self._open_streams):
            relay.at_yield = True  # the server has stopped: no generator runs again
            relay.end_if_abandoned()


def _count(record: UsageRecord, completion: Completion) -> None:
    if completion.usage is not None:
        record.usage = completion.usage
    else:
        record.add_delta(completion.text)
        for tool_call in completion.tool_calls:  # arguments are output too
            record.add_delta(tool_call.arguments)


def _log_extra(plan: Plan) -> dict[str, str]:
    return {"request_id": plan.correlation_id, "event_id": plan.request_id}


def _deadline(context: grpc.aio.ServicerContext) -> float:
    return call_deadline(context, _DEADLINE_MARGIN_S)
