"""The text.v1.TextService servicer: one method per RPC, each a short story of
resolve config → plan → hold → call the provider → usage event."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any

import grpc
import orjson

from chat_codecs import Completion, Delta, Finish, StreamEvent, ToolCallDelta
from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.text.v1 import text_pb2, text_pb2_grpc
from svc_common.auth import Caller, caller
from svc_common.deadlines import call_deadline, time_left
from svc_common.errors import ServiceError
from text_svc.catalog import ModelCatalog
from text_svc.config_source import ConfigSource
from text_svc.environment import Settings
from text_svc.generation import Upstream, UpstreamStream, service_error
from text_svc.metering import NO_BALANCE, Metering, UsageRecord
from text_svc.plan import (
    Plan,
    Route,
    correlation_id_for,
    endpoint_for,
    mint_request_id,
    plan_generation,
)
from upstream import ProviderError

log = logging.getLogger(__name__)

# Leave this much of the caller's deadline to report our own timeout before theirs fires.
_DEADLINE_MARGIN_S = 0.05


class TextService(text_pb2_grpc.TextServiceServicer):
    def __init__(
        self,
        settings: Settings,
        configs: ConfigSource,
        upstream: Upstream,
        metering: Metering,
        catalog: ModelCatalog,
    ) -> None:
        self._settings = settings
        self._configs = configs
        self._upstream = upstream
        self._metering = metering
        self._catalog = catalog
        self._streams: set[_StreamRun] = set()  # in flight, for shutdown
        self._cleanups: set[asyncio.Task[None]] = set()

    async def Generate(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.GenerateResponse:
        who, plan, deadline = await self._prepare(request, context)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        record = UsageRecord(who, plan, hold)
        outcome = "error"
        try:
            route, completion = await self._upstream.complete(plan, deadline)
            record.provider, record.model = route.provider, route.model
            if completion.usage is not None:
                record.usage = completion.usage
            else:
                record.add_delta(completion.text)
                for tool_call in completion.tool_calls:  # arguments are output too
                    record.add_delta(tool_call.arguments)
            outcome = "success"
        except asyncio.CancelledError:
            outcome = "client_disconnect"
            raise
        finally:
            self._metering.finish(record, outcome)
        units = record.units()
        return text_pb2.GenerateResponse(
            id=plan.request_id,
            model=record.model,
            provider=record.provider,
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
            logprobs_json=_logprobs_json(completion),
        )

    async def GenerateStream(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[text_pb2.GenerateStreamResponse]:
        who, plan, deadline = await self._prepare(request, context)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        run = _StreamRun(self._metering, UsageRecord(who, plan, hold), self._streams)
        # types-grpcio declares the callback type as a plain class, not a Protocol, so no
        # function matches it; grpc calls any callable with the context.
        context.add_done_callback(lambda _: self._end_if_abandoned(run))  # type: ignore[arg-type]
        outcome = "client_disconnect"  # unless the stream ends otherwise below
        try:
            try:
                run.stream = await self._upstream.open_stream(plan, deadline)
            except ServiceError:
                outcome = "error"
                raise
            record = run.record
            record.provider, record.model = run.stream.route.provider, run.stream.route.model
            yield run.suspended(
                text_pb2.GenerateStreamResponse(
                    start=text_pb2.StreamStart(
                        id=plan.request_id,
                        model=record.model,
                        provider=record.provider,
                        created=int(time.time()),
                        balance_micros=hold.balance_micros if hold else NO_BALANCE,
                    )
                )
            )
            run.resumed()
            # Content deltas that arrived together (already read, parsed and waiting) go out as
            # one message: a streamed gRPC message costs far more than its bytes, here and in
            # the gateway. Nothing is held back: before waiting for the network, what is
            # pending is sent.
            texts: list[str] = []
            try:
                while True:
                    try:
                        event = run.next_if_ready()
                    except ProviderError:
                        if texts:  # the deltas before an upstream error still go out first
                            yield run.suspended(_content(texts))
                            run.resumed()
                        raise
                    if event is _WAIT:
                        if texts:
                            yield run.suspended(_content(texts))
                            run.resumed()
                            texts = []
                        event = await run.next_waited()
                    if event is _END:
                        break
                    if isinstance(event, Delta) and not event.logprobs:
                        record.add_delta(event.text)  # counted per upstream delta, as before
                        texts.append(event.text)
                        continue
                    if texts:  # anything else keeps its place after the text before it
                        yield run.suspended(_content(texts))
                        run.resumed()
                        texts = []
                    if isinstance(event, Delta):
                        record.add_delta(event.text)
                        delta = text_pb2.StreamDelta(content=event.text)
                        delta.logprobs_json = orjson.dumps(event.logprobs).decode()
                        yield run.suspended(text_pb2.GenerateStreamResponse(delta=delta))
                        run.resumed()
                    elif isinstance(event, ToolCallDelta):
                        record.add_delta(event.arguments)  # arguments are output too
                        yield run.suspended(
                            text_pb2.GenerateStreamResponse(
                                delta=text_pb2.StreamDelta(
                                    tool_calls=[
                                        text_pb2.ToolCallDelta(
                                            index=event.index,
                                            id=event.id,
                                            name=event.name,
                                            arguments=event.arguments,
                                        )
                                    ]
                                )
                            )
                        )
                        run.resumed()
                    elif isinstance(event, Finish):
                        record.usage = event.usage
                        units = record.units()
                        outcome = "success"
                        yield run.suspended(
                            text_pb2.GenerateStreamResponse(
                                finish=text_pb2.StreamFinish(
                                    finish_reason=event.finish_reason,
                                    usage=common_pb2.Usage(
                                        input_tokens=units.input_tokens,
                                        output_tokens=units.output_tokens,
                                    ),
                                )
                            )
                        )
                        run.resumed()
            except ProviderError as err:
                # Output may have reached the caller: bill what was generated, never retry.
                outcome = "upstream_error" if record.deltas else "error"
                raise service_error(err, run.stream.route, plan.mode) from None
        finally:
            await run.end(outcome)

    def _end_if_abandoned(self, run: _StreamRun) -> None:
        # The RPC ended (cancelled) while the generator sat at a yield: grpc will not resume it,
        # so close the upstream and publish usage now rather than whenever it is collected.
        if run.at_yield and not run.ended:
            task = asyncio.get_running_loop().create_task(run.end("client_disconnect"))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def ListModels(
        self, request: text_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.ListModelsResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        endpoint = endpoint_for(config, self._settings)
        models = await self._catalog.models(config, endpoint, self._list_timeout(deadline))
        return text_pb2.ListModelsResponse(
            models=[
                text_pb2.Model(
                    id=m.id, provider=config.provider, owned_by=m.owned_by, created=m.created
                )
                for m in models
            ]
        )

    async def CheckStatus(
        self, request: text_pb2.CheckStatusRequest, context: grpc.aio.ServicerContext
    ) -> text_pb2.CheckStatusResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        response = text_pb2.CheckStatusResponse(provider=config.provider, model=config.model)
        started = time.perf_counter()
        try:
            endpoint = endpoint_for(config, self._settings)
            await self._catalog.list_now(endpoint, self._list_timeout(deadline))
        except ServiceError as err:  # nothing to call: the config itself is incomplete
            response.detail = err.message
        except ProviderError as err:
            route = Route(endpoint, config.model)
            response.detail = service_error(err, route, config.mode).message
        except TimeoutError:
            response.detail = f"{config.provider} did not answer in time"
        else:
            response.ok = True
        response.latency_ms = round((time.perf_counter() - started) * 1000)
        return response

    async def _prepare(
        self, request: text_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> tuple[Caller, Plan, float]:
        who = caller(context)
        who.require_user()  # usage belongs to a user
        correlation_id = correlation_id_for(request, who)
        deadline = _deadline(context)
        config = await self._configs.resolve(who, self._internal_timeout(deadline))
        # Money is keyed only on an id minted here for this call: the caller's id may repeat.
        plan = plan_generation(request, config, self._settings, mint_request_id(), correlation_id)
        return who, plan, deadline

    def _internal_timeout(self, deadline: float) -> float:
        return time_left(deadline, self._settings.internal_call_timeout_s)

    def _list_timeout(self, deadline: float) -> float:
        s = self._settings
        return time_left(deadline, s.upstream_connect_timeout_s + s.upstream_timeout_s)

    async def drain(self, timeout_s: float) -> None:
        """Shutdown, after the server stopped (every RPC ended or cancelled): end the streams
        grpc abandoned at a yield, and wait for the others to finish their own clean-up."""
        for run in list(self._streams):
            self._end_if_abandoned(run)
        waits = [asyncio.ensure_future(run.ended_event.wait()) for run in self._streams]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout_s)
            for wait in late:
                wait.cancel()
            if late:
                log.error("%d streams did not end at shutdown", len(late))
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=timeout_s)


def _logprobs_json(completion: Completion) -> str:
    return orjson.dumps(completion.logprobs).decode() if completion.logprobs else ""


def _deadline(context: grpc.aio.ServicerContext) -> float:
    """The caller's deadline on the event loop's clock (infinite when it set none)."""
    return call_deadline(context, _DEADLINE_MARGIN_S)


def _content(texts: list[str]) -> text_pb2.GenerateStreamResponse:
    text = texts[0] if len(texts) == 1 else "".join(texts)
    return text_pb2.GenerateStreamResponse(delta=text_pb2.StreamDelta(content=text))


class _Step(enum.Enum):
    WAIT = "the next event is not here yet"
    END = "the upstream stream has ended"


_WAIT, _END = _Step.WAIT, _Step.END


class _Waiting:
    """The rest of an `anext(stream)` that stopped to wait: awaiting it carries on exactly as
    the plain `await` would have (what it waits on goes to the task; what the task sends or
    throws, cancellation included, goes back into it)."""

    __slots__ = ("_step", "_throw", "_waits_on")

    def __init__(self, step: Coroutine[Any, Any, StreamEvent], waits_on: Any) -> None:
        self._step = step
        self._waits_on = waits_on
        self._throw: BaseException | None = None

    def cancelled(self) -> _Waiting:
        """This step, to be awaited once more as if its task had been cancelled."""
        self._throw = asyncio.CancelledError()
        return self

    def __await__(self) -> Generator[Any, Any, StreamEvent]:
        step = self._step
        try:
            waits_on = step.throw(self._throw) if self._throw else self._waits_on
            while True:
                try:
                    sent = yield waits_on
                except BaseException as err:
                    waits_on = step.throw(err)
                else:
                    waits_on = step.send(sent)
        except StopIteration as stop:
            event: StreamEvent = stop.value
            return event


class _StreamRun:
    """One GenerateStream's upstream stream and usage record, ended exactly once: by the
    generator's `finally`, or, if the RPC is cancelled while the generator waits at a yield
    (where grpc never resumes it), by the RPC's done callback."""

    __slots__ = (
        "_live",
        "_metering",
        "_waiting",
        "at_yield",
        "ended",
        "ended_event",
        "record",
        "stream",
    )

    def __init__(self, metering: Metering, record: UsageRecord, live: set[_StreamRun]) -> None:
        self._metering = metering
        self._live = live
        self.record = record
        self.stream: UpstreamStream | None = None
        self.at_yield = False
        self.ended = False
        self.ended_event = asyncio.Event()
        self._waiting: _Waiting | None = None
        live.add(self)

    def next_if_ready(self) -> StreamEvent | _Step:
        """The next event if it is already here (read off the network with the ones before it),
        without waiting; WAIT otherwise (then `next_waited()` gives it); END at the end. The
        step is taken by hand: a coroutine that completes at its first `send` never waited."""
        assert self.stream is not None
        step = self.stream.__anext__()
        try:
            waits_on = step.send(None)
        except StopIteration as stop:
            event: StreamEvent = stop.value
            return event
        except StopAsyncIteration:
            return _END
        self._waiting = _Waiting(step, waits_on)
        return _WAIT

    async def next_waited(self) -> StreamEvent | _Step:
        waiting, self._waiting = self._waiting, None
        assert waiting is not None
        try:
            return await waiting
        except StopAsyncIteration:
            return _END

    def suspended(
        self, message: text_pb2.GenerateStreamResponse
    ) -> text_pb2.GenerateStreamResponse:
        self.at_yield = True
        return message

    def resumed(self) -> None:
        self.at_yield = False

    async def end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        # The record is final: publish first, so closing a slow upstream cannot delay the event.
        self._metering.finish(self.record, outcome)
        try:
            # A step left waiting while the RPC ended at a yield still runs inside the upstream
            # stream: cancel it (as its task would have been) before closing the stream.
            waiting, self._waiting = self._waiting, None
            if waiting is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await waiting.cancelled()
            if self.stream is not None:
                await self.stream.aclose()
        finally:
            self._live.discard(self)
            self.ended_event.set()
