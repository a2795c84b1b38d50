"""Stability AI v2beta `stable-image/generate/{ultra|core|sd3}`: a multipart form, `Accept:
image/*`, the image as raw bytes with `finish-reason` and `seed` headers. One image per call, so
n images are n calls; CONTENT_FILTERED is a refusal, never an image handed on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from image_svc.providers.base import ContentRefused, Event, Final, Job, Progress
from upstream import Connect, Endpoint

SERVICES = ("ultra", "core")
# Size -> aspect ratio: the about-one-megapixel sizes the hosted models return.
ASPECT_RATIOS: dict[tuple[int, int], str] = {
    (1024, 1024): "1:1",
    (1344, 768): "16:9",
    (768, 1344): "9:16",
    (1536, 640): "21:9",
    (640, 1536): "9:21",
    (1216, 832): "3:2",
    (832, 1216): "2:3",
    (1088, 896): "5:4",
    (896, 1088): "4:5",
}


class StabilityImages:
    def __init__(self, endpoint: Endpoint, connect: Connect) -> None:
        headers = {"accept": "image/*"}
        if endpoint.api_key:
            headers["authorization"] = f"Bearer {endpoint.api_key}"
        self._http = connect(headers)

    async def run(self, job: Job) -> AsyncIterator[Event]:
        service = job.model if job.model in SERVICES else "sd3"
        for index in range(job.n):
            if index:  # the first call's start is its answer: retries stay possible until then
                yield Progress(0, 1, image_index=index)
            # multipart/form-data even without a file, as the API requires.
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("prompt", job.prompt)
            if job.negative_prompt:
                form.add_field("negative_prompt", job.negative_prompt)
            form.add_field("aspect_ratio", ASPECT_RATIOS.get((job.width, job.height), "1:1"))
            form.add_field("output_format", job.output_format)
            if job.seed is not None:
                form.add_field("seed", str((job.seed + index) % 4_294_967_295))
            if service == "sd3":
                form.add_field("model", job.model)
            if job.style:
                form.add_field("style_preset", job.style)
            data, headers = await self._http.fetch(
                "POST", f"/v2beta/stable-image/generate/{service}", data=form
            )
            if headers.get("finish-reason", "SUCCESS").upper() == "CONTENT_FILTERED":
                raise ContentRefused(
                    "Stability AI's content filter refused this prompt (CONTENT_FILTERED): change"
                    " the prompt"
                )
            seed = headers.get("seed")
            yield Progress(1, 1, image_index=index)
            yield Final(data, index, seed=int(seed) if seed and seed.isdigit() else None)

    async def models(self) -> list[str]:
        # Stability has no model list endpoint: the preset's models are the list.
        return []

    async def aclose(self) -> None:
        await self._http.aclose()
