"""The image.v1.ImageService servicer: resolve the caller's config → member switch → plan →
hold → the provider's job (events relayed as they come) → checked images → one usage event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from grpc_stubs.common.v1 import common_pb2
from grpc_stubs.image.v1 import image_pb2, image_pb2_grpc
from image_svc.checks import check_image
from image_svc.environment import Settings
from image_svc.metering import Metering, UsageRecord
from image_svc.plan import ImageConfig, Plan, _style, endpoint_for, plan_generation
from image_svc.providers.base import (
    Billed,
    ContentRefused,
    Event,
    Final,
    ImageClient,
    Partial,
    Preview,
    Progress,
    Queued,
    TokenUsage,
)
from image_svc.providers.workflows import WorkflowError
from image_svc.store import ImageStore
from svc_common.auth import Caller, caller
from svc_common.deadlines import call_deadline, time_left
from svc_common.errors import (
    API_KEY_MISSING,
    MEMBERSHIP_REQUIRED,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ServiceError,
)
from svc_common.holds import NO_BALANCE
from upstream import (
    AttemptPolicy,
    Attempts,
    ClientPool,
    OpenStream,
    ProviderError,
    Route,
    RouteFailed,
    service_error,
)

log = logging.getLogger(__name__)

_DEADLINE_MARGIN_S = 0.05
# Images above this are checked in a worker thread, so the loop keeps relaying other jobs.
_THREAD_CHECK_BYTES = 256 * 1024
NEEDS_OWN_KEY = (
    "image generation needs your own API key: member mode is not enabled for images on this"
    " platform; set your image provider's key with PUT /api/settings/llm/image/api-key and use"
    " mode byok"
)

Resolve: TypeAlias = Callable[[Caller, float], Any]
Stream: TypeAlias = OpenStream[ImageClient, Event]


class ImageService(image_pb2_grpc.ImageServiceServicer):
    def __init__(
        self,
        settings: Settings,
        resolve: Resolve,
        clients: ClientPool[ImageClient],
        metering: Metering,
        store: ImageStore,
    ) -> None:
        self._settings = settings
        self._resolve = resolve
        self._clients = clients
        self._attempts = Attempts(
            clients,
            AttemptPolicy(
                first_output_timeout_s=settings.upstream_timeout_s,
                idle_timeout_s=settings.upstream_idle_timeout_s,
                max_retries=settings.max_retries,
                max_retry_wait_s=settings.max_retry_wait_s,
            ),
        )
        self._metering = metering
        self._store = store
        self._runs: set[_Run] = set()
        self._cleanups: set[asyncio.Task[None]] = set()

    # --- RPCs ---------------------------------------------------------------------------------

    async def Generate(
        self, request: image_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> image_pb2.GenerateResponse:
        who, plan, deadline = await self._prepare(request, context, stream=False)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        run = _Run(self._metering, UsageRecord(who, plan, hold), self._runs)
        outcome = "client_disconnect"
        response = image_pb2.GenerateResponse(
            id=plan.request_id,
            model=plan.job.model,
            provider=plan.provider,
            created=int(time.time()),
            size=plan.job.size,
            quality=plan.job.quality or plan.usage_quality,
            output_format=plan.job.output_format,
            background=plan.job.background,
            balance_micros=hold.balance_micros if hold else NO_BALANCE,
        )
        try:
            run.stream = await self._open(plan, deadline, run)
            async for event in run.stream:
                if isinstance(event, Final):
                    response.images.append(await self._image(who, plan, event))
                    run.record.images += 1
                    if event.usage is not None:
                        run.record.add_tokens(event.usage)
                elif isinstance(event, Billed):
                    run.record.add_tokens(event.usage)
            outcome = "success"
        except ProviderError as err:
            outcome = "upstream_error"
            raise service_error(
                err, Route(plan.endpoint, plan.job.model), plan.mode, "image"
            ) from None
        except ServiceError:
            outcome = "upstream_error"
            raise
        finally:
            await run.end(outcome)
        response.usage.CopyFrom(_usage(plan, run.record))
        response.has_token_usage = run.record.tokens is not None
        return response

    async def GenerateStream(
        self, request: image_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[image_pb2.GenerateStreamResponse]:
        who, plan, deadline = await self._prepare(request, context, stream=True)
        hold = await self._metering.reserve(who, plan, self._internal_timeout(deadline))
        run = _Run(self._metering, UsageRecord(who, plan, hold), self._runs)
        # types-grpcio types the callback as a class no function matches; grpc calls any callable.
        context.add_done_callback(lambda _: self._end_if_abandoned(run))  # type: ignore[arg-type]
        outcome = "client_disconnect"
        record = run.record
        try:
            run.stream = await self._open(plan, deadline, run)
            yield run.suspended(
                image_pb2.GenerateStreamResponse(
                    start=image_pb2.StreamStart(
                        id=plan.request_id,
                        model=plan.job.model,
                        provider=plan.provider,
                        created=int(time.time()),
                        balance_micros=hold.balance_micros if hold else NO_BALANCE,
                    )
                )
            )
            run.resumed()
            try:
                async for event in run.stream:
                    message = await self._stream_message(who, plan, record, event)
                    if message is not None:
                        yield run.suspended(message)
                        run.resumed()
            except ProviderError as err:
                outcome = "upstream_error"
                raise service_error(
                    err, Route(plan.endpoint, plan.job.model), plan.mode, "image"
                ) from None
            except ServiceError:
                outcome = "upstream_error"
                raise
            outcome = "success"
            usage = _usage(plan, record)
            yield run.suspended(
                image_pb2.GenerateStreamResponse(finish=image_pb2.StreamFinish(usage=usage))
            )
            run.resumed()
        except ServiceError:
            if outcome == "client_disconnect":
                outcome = "error"
            raise
        finally:
            await run.end(outcome)

    async def ListModels(
        self, request: image_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> image_pb2.ListModelsResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._config(who, deadline)
        models = list(config.models)
        if not models:
            try:
                models = await self._with_client(config, deadline, lambda c: c.models())
            except ProviderError:
                models = []
            models = models or [config.model]
        return image_pb2.ListModelsResponse(
            models=[
                image_pb2.Model(id=m, provider=config.provider, owned_by=config.provider)
                for m in models
            ]
        )

    async def CheckStatus(
        self, request: image_pb2.CheckStatusRequest, context: grpc.aio.ServicerContext
    ) -> image_pb2.CheckStatusResponse:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._config(who, deadline)
        response = image_pb2.CheckStatusResponse(provider=config.provider, model=config.model)
        started = time.perf_counter()
        try:
            await self._with_client(config, deadline, lambda c: c.models())
        except ServiceError as err:
            response.detail = err.message
        except ProviderError as err:
            endpoint = endpoint_for(config, self._settings, _style(config))
            response.detail = service_error(
                err, Route(endpoint, config.model), config.mode, "image"
            ).message
        except TimeoutError:
            response.detail = f"{config.provider} did not answer in time"
        else:
            response.ok = True
        response.latency_ms = round((time.perf_counter() - started) * 1000)
        return response

    async def GetImage(
        self, request: image_pb2.GetImageRequest, context: grpc.aio.ServicerContext
    ) -> image_pb2.GetImageResponse:
        who = caller(context)
        who.require_user()
        data, media_type = await self._store.get(
            who.user_id, request.image_id, request.expires, request.signature
        )
        return image_pb2.GetImageResponse(data=data, media_type=media_type)

    # --- steps --------------------------------------------------------------------------------

    async def _config(self, who: Caller, deadline: float) -> ImageConfig:
        try:
            config: ImageConfig = await self._resolve(who, self._internal_timeout(deadline))
        except FailedPrecondition as err:
            # A member without a key while member mode is off: say what they need, as a 403.
            if (
                who.is_member
                and not self._settings.member_mode
                and err.reason
                in (
                    API_KEY_MISSING,
                    MEMBERSHIP_REQUIRED,
                )
            ):
                raise PermissionDenied(NEEDS_OWN_KEY) from None
            raise
        if config.mode == "member" and not self._settings.member_mode:
            raise PermissionDenied(NEEDS_OWN_KEY)
        return config

    async def _prepare(
        self, request: image_pb2.GenerateRequest, context: grpc.aio.ServicerContext, *, stream: bool
    ) -> tuple[Caller, Plan, float]:
        who = caller(context)
        who.require_user()
        deadline = _deadline(context)
        config = await self._config(who, deadline)
        plan = plan_generation(request, config, self._settings, stream)
        if plan.response_format == "url" and not self._store.available():
            raise FailedPrecondition(
                "response_format url is not available on this platform: use b64_json",
                param="response_format",
            )
        return who, plan, deadline

    async def _open(self, plan: Plan, deadline: float, run: _Run) -> Stream:
        route = Route(plan.endpoint, plan.job.model)
        try:
            return await self._attempts.open_stream(
                [route],
                deadline,
                lambda client, _: _events(client, plan),
                log_extra={"request_id": plan.correlation_id, "event_id": plan.request_id},
            )
        except RouteFailed as err:
            run.failed_before_output = True
            raise service_error(err.error, err.route, plan.mode, "image") from None

    async def _with_client(
        self, config: ImageConfig, deadline: float, call: Callable[[ImageClient], Any]
    ) -> Any:
        endpoint = endpoint_for(config, self._settings, _style(config))
        lease = self._clients.acquire(endpoint)
        try:
            remaining = deadline - asyncio.get_running_loop().time()
            timeout = min(self._settings.upstream_connect_timeout_s + 10.0, remaining)
            async with asyncio.timeout(max(0.001, timeout)):
                return await call(lease.client)
        finally:
            self._clients.release(lease)

    async def _image(self, who: Caller, plan: Plan, final: Final) -> image_pb2.Image:
        data = final.data
        if len(data) > self._settings.max_image_bytes:
            raise FailedPrecondition(
                f"{plan.provider} returned an image larger than the platform takes"
            )
        if len(data) > _THREAD_CHECK_BYTES:
            checked = await asyncio.to_thread(check_image, data, plan.provider, plan.expected_size)
        else:
            checked = check_image(data, plan.provider, plan.expected_size)
        image = image_pb2.Image(
            media_type=checked.media_type,
            width=checked.width,
            height=checked.height,
            revised_prompt=final.revised_prompt,
        )
        if final.seed is not None:
            image.seed = final.seed
        if plan.response_format == "url":
            image.url = await self._store.put(who.user_id, checked.data, checked.media_type)
        else:
            image.data = checked.data
        return image

    async def _stream_message(
        self, who: Caller, plan: Plan, record: UsageRecord, event: Event
    ) -> image_pb2.GenerateStreamResponse | None:
        job = plan.job
        if isinstance(event, Queued):
            return image_pb2.GenerateStreamResponse(
                queued=image_pb2.Queued(position=event.position)
            )
        if isinstance(event, Progress):
            return image_pb2.GenerateStreamResponse(
                progress=image_pb2.Progress(
                    step=event.step,
                    total=event.total,
                    eta_s=event.eta_s,
                    image_index=event.image_index,
                )
            )
        if isinstance(event, Preview):
            return image_pb2.GenerateStreamResponse(
                preview=image_pb2.Preview(
                    data=event.data, media_type=event.media_type, image_index=event.image_index
                )
            )
        if isinstance(event, Partial):
            return image_pb2.GenerateStreamResponse(
                partial_image=image_pb2.PartialImage(
                    data=event.data,
                    media_type=plan.media_type,
                    partial_image_index=event.index,
                    size=job.size,
                    quality=job.quality or plan.usage_quality,
                    background=job.background,
                    output_format=job.output_format,
                )
            )
        if isinstance(event, Billed):
            record.add_tokens(event.usage)
            return None
        image = await self._image(who, plan, event)
        record.images += 1
        completed = image_pb2.Completed(
            image=image,
            image_index=event.index,
            size=job.size if job.size != "auto" else f"{image.width}x{image.height}",
            quality=job.quality or plan.usage_quality,
            background=job.background,
            output_format=job.output_format,
            has_token_usage=event.usage is not None,
        )
        if event.usage is not None:
            record.add_tokens(event.usage)
            completed.usage.CopyFrom(_image_usage(plan, event.usage, 1))
        return image_pb2.GenerateStreamResponse(completed=completed)

    def _end_if_abandoned(self, run: _Run) -> None:
        # The RPC ended (cancelled) while the generator sat at a yield: grpc will not resume it,
        # so cancel the provider's job and publish the usage now.
        if run.at_yield and not run.ended:
            task = asyncio.get_running_loop().create_task(run.end("client_disconnect"))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    def _internal_timeout(self, deadline: float) -> float:
        return time_left(deadline, self._settings.internal_call_timeout_s)

    async def drain(self, timeout_s: float) -> None:
        for run in list(self._runs):
            self._end_if_abandoned(run)
        waits = [asyncio.ensure_future(run.ended_event.wait()) for run in self._runs]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout_s)
            for wait in late:
                wait.cancel()
        if self._cleanups:
            await asyncio.wait(set(self._cleanups), timeout=timeout_s)


async def _events(client: ImageClient, plan: Plan) -> AsyncIterator[Event]:
    """The client's events with its refusals turned into what the caller is told."""
    try:
        async for event in client.run(plan.job):
            yield event
    except ContentRefused as err:
        raise InvalidArgument(str(err), param="prompt") from None
    except WorkflowError as err:
        raise FailedPrecondition(f"the ComfyUI workflow cannot be used: {err}") from None


def _image_usage(plan: Plan, tokens: TokenUsage | None, images: int) -> image_pb2.ImageUsage:
    t = tokens or TokenUsage()
    return image_pb2.ImageUsage(
        units=common_pb2.Usage(
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            images=images,
            image_size=plan.usage_size,
            image_quality=plan.usage_quality,
        ),
        text_input_tokens=t.text_tokens,
        image_input_tokens=t.image_tokens,
    )


def _usage(plan: Plan, record: UsageRecord) -> image_pb2.ImageUsage:
    return _image_usage(plan, record.tokens, record.images)


def _deadline(context: grpc.aio.ServicerContext) -> float:
    return call_deadline(context, _DEADLINE_MARGIN_S)


class _Run:
    """One call's provider job and usage record, ended exactly once (closing the job cancels it
    on the provider: interrupt, removal from its queue)."""

    __slots__ = (
        "_live",
        "_metering",
        "at_yield",
        "ended",
        "ended_event",
        "failed_before_output",
        "record",
        "stream",
    )

    def __init__(self, metering: Metering, record: UsageRecord, live: set[_Run]) -> None:
        self._metering = metering
        self._live = live
        self.record = record
        self.stream: Stream | None = None
        self.at_yield = False
        self.ended = False
        self.failed_before_output = False
        self.ended_event = asyncio.Event()
        live.add(self)

    def suspended(
        self, message: image_pb2.GenerateStreamResponse
    ) -> image_pb2.GenerateStreamResponse:
        self.at_yield = True
        return message

    def resumed(self) -> None:
        self.at_yield = False

    async def end(self, outcome: str) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            # Close first: a cancelled job's interrupt reaches the provider before we settle.
            if self.stream is not None:
                await self.stream.aclose()
        except Exception:
            log.warning("closing a provider job failed", exc_info=True)
        finally:
            self._metering.finish(self.record, outcome)
            self._live.discard(self)
            self.ended_event.set()
