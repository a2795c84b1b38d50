"""AUTOMATIC1111 web UI (`--api`): `POST /sdapi/v1/txt2img` with the checkpoint in
`override_settings`; `/sdapi/v1/progress` polled while the job runs (step, ETA, the current
preview); `/sdapi/v1/interrupt` when the caller goes away while our job runs. HTTP Basic auth
when credentials ("user:password") are configured.

A1111 cannot take back a queued txt2img, so image-svc sends each endpoint one job at a time
(`SubmissionLines`): a job whose caller leaves while it waits in that line is never sent."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from image_svc.providers.base import Event, Final, Job, Preview, Progress, Queued
from image_svc.providers.submission_line import SubmissionLines, Ticket
from upstream import Connect, Endpoint, Failure, ProviderError


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ProviderError(
            Failure.ERROR, "Automatic1111 sent an image that is not base64"
        ) from None


class Automatic1111Images:
    def __init__(
        self, endpoint: Endpoint, connect: Connect, poll_s: float, lines: SubmissionLines
    ) -> None:
        headers = {}
        if endpoint.api_key:
            headers["authorization"] = (
                "Basic " + base64.b64encode(endpoint.api_key.encode()).decode()
            )
        self._http = connect(headers)
        self._poll_s = poll_s
        self._lines = lines
        self._line_key = (endpoint.base_url, endpoint.api_key)

    async def run(self, job: Job) -> AsyncIterator[Event]:
        ticket = self._lines.join(*self._line_key)
        try:
            async for position in ticket.positions():
                yield Queued(position)
            # aclosing: a caller that leaves mid-job closes _submit at once (its interrupt).
            async with contextlib.aclosing(self._submit(job, ticket)) as events:
                async for event in events:
                    yield event
        finally:
            ticket.leave()

    async def _submit(self, job: Job, ticket: Ticket) -> AsyncGenerator[Event, None]:
        task_id = uuid.uuid4().hex
        body: dict[str, Any] = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "seed": job.seed if job.seed is not None else -1,
            "steps": job.steps,
            "cfg_scale": job.cfg_scale,
            "width": job.width,
            "height": job.height,
            "batch_size": job.n,
            "n_iter": 1,
            "send_images": True,
            "save_images": False,
            "force_task_id": task_id,
            "override_settings": {"sd_model_checkpoint": job.model},
            "override_settings_restore_afterwards": True,
        }
        if job.sampler:
            body["sampler_name"] = job.sampler
        ours = f"task({task_id})"
        call = asyncio.ensure_future(self._http.post("/sdapi/v1/txt2img", body))
        running = False
        last_step = -1
        finished = False
        try:
            queued_told = False
            while not call.done():
                await asyncio.wait({call}, timeout=self._poll_s)
                if call.done():
                    break
                state = await self._http.get("/sdapi/v1/progress?skip_current_image=false")
                info = state.get("state") or {}
                if info.get("job") != ours:
                    if not running and not queued_told and info.get("job_count"):
                        # A1111 reports only the running job: ours waits behind it.
                        queued_told = True
                        yield Queued(1)
                    continue
                running = True
                step = int(info.get("sampling_step") or 0)
                if step == last_step:
                    continue
                last_step = step
                total = int(info.get("sampling_steps") or job.steps)
                yield Progress(step, total, float(state.get("eta_relative") or 0.0))
                if state.get("current_image"):
                    yield Preview(_b64(state["current_image"]), "image/png")
            answer = call.result()
            finished = True
            # A1111 is done with it: the next job in our line goes while these are checked.
            ticket.leave()
        finally:
            if not finished:
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
                if running or await self._is_running(ours):
                    # Never another user's job: only ours is interrupted.
                    await asyncio.shield(self._interrupt())
        images = answer.get("images") if isinstance(answer, dict) else None
        if not isinstance(images, list) or not images:
            raise ProviderError(Failure.ERROR, "Automatic1111 answered without images")
        # With a batch A1111 puts a grid of them first: the job's own images are the last n.
        for index, image in enumerate(images[-job.n :]):
            yield Final(_b64(image), index, seed=job.seed + index if job.seed is not None else None)

    async def _is_running(self, ours: str) -> bool:
        try:
            state = await asyncio.shield(
                self._http.get("/sdapi/v1/progress?skip_current_image=true")
            )
        except ProviderError:
            return False
        return bool((state.get("state") or {}).get("job") == ours)

    async def _interrupt(self) -> None:
        with contextlib.suppress(ProviderError):
            await self._http.post("/sdapi/v1/interrupt", {})

    async def models(self) -> list[str]:
        answer = await self._http.get("/sdapi/v1/sd-models")
        return [str(m.get("model_name") or m.get("title")) for m in answer if isinstance(m, dict)]

    async def aclose(self) -> None:
        await self._http.aclose()
