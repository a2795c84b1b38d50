"""What the image stand-ins share: deterministic Pillow-drawn images whose pixels depend on the
prompt, seed and size, the previews of an unfinished image, and a one-at-a-time job queue that runs
jobs step by step on the stand-in's clock (Automatic1111 and ComfyUI each execute one job at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import random
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from provider_stand_ins.state import StandInState

FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
PREVIEW_SIDE = 256  # previews are small, as the providers' latent previews are


def seed_for(prompt: str, seed: int | None = None) -> int:
    """The seed a job uses: the given one, or one derived from the prompt (never wall-clock)."""
    if seed is not None and seed >= 0:
        return seed
    digest = hashlib.sha256(prompt.encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _rng(prompt: str, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The finished picture: a smooth field of colours with a few shapes, all from prompt+seed."""
    rng = _rng(prompt, seed)
    field = Image.new("RGB", (4, 4))
    field.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(16)])
    picture = field.resize((width, height), Image.Resampling.BICUBIC)
    pen = ImageDraw.Draw(picture)
    for _ in range(3 + rng.randrange(4)):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            pen.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            pen.rectangle((x0, y0, x1, y1), fill=colour)
    return picture


def _noise(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The latent noise a job starts from (coarse, so it is cheap at any size)."""
    rng = _rng(prompt, seed + 1)
    coarse = Image.new("RGB", (32, 32))
    coarse.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(1024)]
    )
    return coarse.resize((width, height), Image.Resampling.NEAREST)


def encode(picture: Image.Image, output_format: str = "png") -> bytes:
    buffer = io.BytesIO()
    kind = FORMATS[output_format]
    if kind == "PNG":
        # Fast compression: the stand-in's time should be its step delay, not zlib.
        picture.save(buffer, kind, compress_level=1)
    else:
        picture.save(buffer, kind, quality=85)
    return buffer.getvalue()


@lru_cache(maxsize=16)
def render(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    output_format: str = "png",
    filtered: bool = False,
    transparent: bool = False,
    grain: bool = False,
) -> bytes:
    """The encoded final image; ``filtered`` blurs it past recognition, as safety filters do;
    ``grain`` (the knob) makes it as hard to compress as a photo."""
    picture = draw(prompt, seed, width, height)
    if grain:
        noise = _rng(prompt, seed + 2).randbytes(width * height * 3)
        picture = Image.blend(picture, Image.frombytes("RGB", (width, height), noise), 0.5)
    if filtered:
        picture = picture.filter(ImageFilter.BoxBlur(max(width, height) // 4))
    if transparent and FORMATS[output_format] != "JPEG":
        picture = picture.convert("RGBA")
        picture.putalpha(Image.new("L", (width, height), 200))
    return encode(picture, output_format)


def render_progress(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    progress: float,
    output_format: str = "png",
    max_side: int | None = PREVIEW_SIDE,
) -> bytes:
    """An unfinished image: the picture emerging from noise as ``progress`` goes 0 → 1."""
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    picture = draw(prompt, seed, width, height)
    mixed = Image.blend(_noise(prompt, seed, width, height), picture, min(max(progress, 0.0), 1.0))
    return encode(mixed, output_format)


async def render_async(*args: Any, **kwargs: Any) -> bytes:
    """``render`` off the event loop: a large PNG takes long enough to stall other requests."""
    return await asyncio.to_thread(render, *args, **kwargs)


# --- jobs ----------------------------------------------------------------------------------------

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
INTERRUPTED = "interrupted"
ERRORED = "errored"
DISCONNECT = "disconnect"  # the disconnect_after_steps knob fired

_job_ids = itertools.count(1)


class ImageJob:
    """One generation job: what to draw, how far it got, and how it ended."""

    def __init__(
        self,
        prompt: str,
        seed: int,
        width: int,
        height: int,
        steps: int,
        batch_size: int = 1,
        *,
        job_id: str | None = None,
        data: Any = None,
    ) -> None:
        self.id = job_id or f"job-{next(_job_ids)}"
        self.prompt = prompt
        self.seed = seed
        self.width = width
        self.height = height
        self.steps = max(1, steps)
        self.batch_size = max(1, batch_size)
        self.data = data  # the provider's own request (graph, payload) for its handlers
        self.step = 0
        self.status = QUEUED
        self.error: str | None = None
        self.images: list[bytes] = []
        self.done = asyncio.Event()
        self._interrupt = asyncio.Event()

    @property
    def progress(self) -> float:
        return self.step / self.steps

    def interrupt(self) -> None:
        self._interrupt.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def preview(self, output_format: str = "png", max_side: int | None = PREVIEW_SIDE) -> bytes:
        return render_progress(
            self.prompt, self.seed, self.width, self.height, self.progress, output_format, max_side
        )

    def final_images(self, output_format: str = "png") -> list[bytes]:
        """One image per batch item; item i uses seed + i, as A1111 and ComfyUI do."""
        return [
            render(self.prompt, self.seed + index, self.width, self.height, output_format)
            for index in range(self.batch_size)
        ]


StepHook = Callable[[ImageJob], Awaitable[None]]


class JobQueue:
    """Runs jobs one at a time, step by step, on the stand-in's clock.

    Knobs read from the state: ``step_delay_s`` per step, ``hold_queue`` (start nothing),
    ``queue_limit`` (refuse beyond), ``error_after_steps`` and ``disconnect_after_steps``.
    Hooks let the provider report each change the way it does (polling state or websocket).
    """

    def __init__(
        self,
        state: StandInState,
        *,
        on_start: StepHook | None = None,
        on_step: StepHook | None = None,
        on_finish: StepHook | None = None,
        on_queue_change: Callable[[], Awaitable[None]] | None = None,
        disconnect_ends_job: bool = True,
    ) -> None:
        self.state = state
        # Where the client's connection is the job's (A1111's txt2img call), a dropped
        # connection ends the job; ComfyUI's job goes on without its websocket.
        self.disconnect_ends_job = disconnect_ends_job
        self.pending: list[ImageJob] = []
        self.current: ImageJob | None = None
        self.history: dict[str, ImageJob] = {}
        self._on_start = on_start
        self._on_step = on_step
        self._on_finish = on_finish
        self._on_queue_change = on_queue_change
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.completed_jobs = 0

    @property
    def remaining(self) -> int:
        """Jobs queued or running, as ComfyUI's ``queue_remaining`` counts them."""
        return len(self.pending) + (1 if self.current is not None else 0)

    def full(self) -> bool:
        limit = self.state.behaviour.queue_limit
        return limit is not None and self.remaining >= limit

    async def submit(self, job: ImageJob) -> int:
        """Queue ``job``; returns its place (0 = runs next)."""
        self.pending.append(job)
        self.history[job.id] = job
        self._ensure_worker()
        self._wake.set()
        if self._on_queue_change is not None:
            await self._on_queue_change()
        return len(self.pending) - 1

    async def remove(self, job_id: str) -> bool:
        """Take a job that has not started off the queue."""
        for job in self.pending:
            if job.id == job_id:
                self.pending.remove(job)
                job.status = INTERRUPTED
                job.done.set()
                if self._on_queue_change is not None:
                    await self._on_queue_change()
                return True
        return False

    def interrupt(self, job_id: str | None = None) -> bool:
        """Stop the running job (only if it is ``job_id``, when given)."""
        job = self.current
        if job is None or (job_id is not None and job.id != job_id):
            return False
        job.interrupt()
        return True

    def release(self) -> None:
        """Tell the worker the knobs changed (``hold_queue`` turned off)."""
        self._wake.set()

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._work())

    async def _wait(self, seconds: float | None, *events: asyncio.Event) -> None:
        """Sleep ``seconds`` (None = until an event), cut short by an event or server stop."""
        waitables: set[asyncio.Future[Any]] = {asyncio.ensure_future(e.wait()) for e in events}
        closing = self.state.closing
        try:
            if closing is not None:
                waitables.add(closing)
            if not waitables:
                await asyncio.sleep(seconds or 0)
                return
            await asyncio.wait(waitables, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waitable in waitables:
                if waitable is not closing and not waitable.done():
                    waitable.cancel()

    def _stopping(self) -> bool:
        closing = self.state.closing
        return closing is not None and closing.done()

    async def _work(self) -> None:
        while not self._stopping():
            if not self.pending:
                self._wake.clear()
                await self._wait(None, self._wake)
                continue
            if self.state.behaviour.hold_queue:
                # Knobs change by plain assignment (also over HTTP), so a held queue looks again
                # shortly rather than waiting for a signal no one sends.
                await self._wait(0.01)
                continue
            job = self.pending.pop(0)
            self.current = job
            try:
                await self._run(job)
            finally:
                self.current = None
                job.done.set()
            self.completed_jobs += 1
            self.state.changed()
            if self._on_queue_change is not None:
                await self._on_queue_change()
        for job in [*self.pending]:
            job.status = INTERRUPTED
            job.done.set()

    async def _run(self, job: ImageJob) -> None:
        job.status = RUNNING
        self.state.changed()
        if self._on_start is not None:
            await self._on_start(job)
        while job.step < job.steps:
            behaviour = self.state.behaviour  # knobs may change while a job runs
            if behaviour.step_delay_s:
                await self._wait(behaviour.step_delay_s, job._interrupt)
            if job.interrupted or self._stopping():
                job.status = INTERRUPTED
                break
            job.step += 1
            self.state.changed()
            if self._on_step is not None:
                await self._on_step(job)
            if behaviour.error_after_steps is not None and job.step >= behaviour.error_after_steps:
                job.status = ERRORED
                job.error = "CUDA out of memory. Tried to allocate 2.00 GiB"
                break
            if (
                self.disconnect_ends_job
                and behaviour.disconnect_after_steps is not None
                and job.step >= behaviour.disconnect_after_steps
            ):
                job.status = DISCONNECT
                break
        else:
            job.images = await asyncio.to_thread(job.final_images)
            job.status = SUCCEEDED
        if self._on_finish is not None:
            await self._on_finish(job)

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
