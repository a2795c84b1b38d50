"""The AUTOMATIC1111 web UI stand-in (``--api``): ``txt2img`` run one job at a time, step by step,
``progress`` polled while it runs (with a preview image), ``interrupt``, models, samplers,
options, optional HTTP Basic auth, and A1111's ``{"error","detail","body","errors"}`` errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
from typing import Any

import orjson
from PIL import Image

from provider_stand_ins.app import JSON_HEADERS, Exchange, Handler, Provider
from provider_stand_ins.images import (
    DISCONNECT,
    ERRORED,
    INTERRUPTED,
    SUCCEEDED,
    ImageJob,
    JobQueue,
    render,
    render_progress,
    seed_for,
)
from provider_stand_ins.state import (
    COMPLETED,
    DISCONNECTED,
    FAILED,
    REJECTED,
    RequestRecord,
)

DEFAULT_MODELS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")
MODELS_DIR = "/stable-diffusion-webui/models/Stable-diffusion/"
SAMPLERS = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "Heun", "DPM2",
    "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM",
)  # fmt: skip
SCHEDULERS = ("automatic", "uniform", "karras", "exponential", "polyexponential", "sgm_uniform")
VERSION = "v1.10.1"
# Request defaults of StableDiffusionProcessingTxt2Img.
DEFAULTS: dict[str, Any] = {
    "prompt": "",
    "negative_prompt": "",
    "styles": None,
    "seed": -1,
    "subseed": -1,
    "subseed_strength": 0,
    "seed_resize_from_h": -1,
    "seed_resize_from_w": -1,
    "sampler_name": None,
    "scheduler": None,
    "batch_size": 1,
    "n_iter": 1,
    "steps": 50,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 512,
    "restore_faces": None,
    "tiling": None,
    "do_not_save_samples": False,
    "do_not_save_grid": False,
    "eta": None,
    "denoising_strength": None,
    "override_settings": None,
    "override_settings_restore_afterwards": True,
    "enable_hr": False,
    "sampler_index": "Euler",
    "script_name": None,
    "script_args": [],
    "send_images": True,
    "save_images": False,
    "alwayson_scripts": {},
    "force_task_id": None,
    "infotext": None,
}
INT_FIELDS = ("seed", "steps", "width", "height", "batch_size", "n_iter")
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity; 5.12 GiB"
    " already allocated)"
)


def short_hash(filename: str) -> str:
    return hashlib.sha256(filename.encode()).hexdigest()[:10]


def title(filename: str) -> str:
    """A checkpoint's title, as A1111 lists it: ``name.safetensors [hash]``."""
    return f"{filename} [{short_hash(filename)}]"


def error_body(error: str, detail: Any = "", errors: str = "", body: Any = "") -> bytes:
    return orjson.dumps({"error": error, "detail": detail, "body": body, "errors": errors})


def http_error(status: int, detail: str) -> bytes:
    """What A1111's handler makes of ``HTTPException(status, detail)``."""
    return error_body("HTTPException", detail, f"{status}: {detail}")


def grid(images: list[bytes]) -> bytes:
    """The grid A1111 puts first when a job makes more than one image (``return_grid``)."""
    pictures = [Image.open(io.BytesIO(image)) for image in images]
    width, height = pictures[0].size
    sheet = Image.new("RGB", (width * len(pictures), height))
    for index, picture in enumerate(pictures):
        sheet.paste(picture, (index * width, 0))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


class Automatic1111Provider(Provider):
    """AUTOMATIC1111's stable-diffusion-webui API."""

    name = "automatic1111"
    default_models = DEFAULT_MODELS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = JobQueue(self.state, on_start=self._job_started)
        self.options: dict[str, Any] = {
            "sd_model_checkpoint": title(self.state.models[0]) if self.state.models else None,
            "samples_format": "png",
            "return_grid": True,
            "CLIP_stop_at_last_layers": 1,
            "sd_vae": "Automatic",
            "show_progress_every_n_steps": 1,
            "live_previews_enable": True,
        }
        self._job_started_at = ""

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/sdapi/v1/txt2img"): self.txt2img,
            ("GET", "/sdapi/v1/progress"): self.progress,
            ("POST", "/sdapi/v1/interrupt"): self.interrupt,
            ("POST", "/sdapi/v1/skip"): self.interrupt,
            ("GET", "/sdapi/v1/sd-models"): self.sd_models,
            ("GET", "/sdapi/v1/samplers"): self.samplers,
            ("GET", "/sdapi/v1/schedulers"): self.schedulers,
            ("GET", "/sdapi/v1/options"): self.get_options,
            ("POST", "/sdapi/v1/options"): self.set_options,
        }

    # --- auth and errors ---------------------------------------------------------------------

    def credentials(self, ex: Exchange) -> str | None:
        """``user:password`` from an HTTP Basic header, or None."""
        value = ex.header(b"authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            return base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None

    async def _begin(self, ex: Exchange) -> RequestRecord | None:
        """Log the request; answer 401 (``--api-auth``) if its credentials are not accepted."""
        record = self.state.begin(ex.method, ex.path, self.credentials(ex))
        if self.state.key_accepted(record.key):
            return record
        await ex.respond(
            401,
            http_error(401, "Incorrect username or password"),
            [*JSON_HEADERS, (b"www-authenticate", b"Basic")],
        )
        self.state.finish(record, REJECTED, 401)
        return None

    async def unmatched(self, ex: Exchange) -> None:
        record = self.state.begin(ex.method, ex.path, self.credentials(ex))
        await ex.respond(404, orjson.dumps({"detail": "Not Found"}))
        self.state.finish(record, REJECTED, 404)

    async def send_error(
        self, ex: Exchange, record: RequestRecord, status: int, outcome: str = REJECTED
    ) -> None:
        if status >= 500 and status != 503:
            body = error_body("OutOfMemoryError", "", OOM_MESSAGE)
        else:
            detail = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Error")
            body = http_error(status, detail)
        await ex.respond(status, body, self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def _reject(self, ex: Exchange, record: RequestRecord, status: int, body: bytes) -> None:
        await ex.respond(status, body)
        self.state.finish(record, REJECTED, status)

    # --- txt2img -----------------------------------------------------------------------------

    def _checkpoint(self, name: str | None) -> str | None:
        """The filename of the checkpoint a title, model name or filename names, if known."""
        if name is None:
            return None
        for filename in self.state.models:
            if name in (filename, title(filename), filename.rsplit(".", 1)[0]):
                return filename
        return name if self.state.behaviour.accept_any_model else None

    def _validate(self, body: Any) -> tuple[int, bytes] | None:
        if not isinstance(body, dict):
            detail = [
                {"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}
            ]
            return 422, orjson.dumps({"detail": detail})
        for name in INT_FIELDS:
            value = body.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                detail = [
                    {
                        "loc": ["body", name],
                        "msg": "value is not a valid integer",
                        "type": "type_error.integer",
                    }
                ]
                return 422, orjson.dumps({"detail": detail})
        sampler = body.get("sampler_name") or body.get("sampler_index")
        if sampler is not None and sampler not in SAMPLERS:
            return 404, http_error(404, "Sampler not found")
        for name in ("steps", "width", "height", "batch_size", "n_iter"):
            if name in body and body[name] < 1:
                return 500, error_body(
                    "ValueError", "", f"{name} must be at least 1, got {body[name]}"
                )
        override = body.get("override_settings") or {}
        checkpoint = override.get("sd_model_checkpoint") if isinstance(override, dict) else None
        if checkpoint is not None and self._checkpoint(checkpoint) is None:
            return 500, error_body("RuntimeError", "", f"model {checkpoint!r} not found")
        return None

    async def txt2img(self, ex: Exchange) -> None:
        state = self.state
        record = await self._begin(ex)
        if record is None:
            return
        try:
            body = await ex.read_json()
        except ValueError:
            body = None
        invalid = self._validate(body)
        if invalid is not None:
            await self._reject(ex, record, *invalid)
            return
        request = {**DEFAULTS, **body}
        override = request.get("override_settings") or {}
        checkpoint = self._checkpoint(
            override.get("sd_model_checkpoint") or self.options["sd_model_checkpoint"]
        )
        record.model = checkpoint
        behaviour = state.behaviour
        if self.queue.full():
            await self.send_error(ex, record, 503)
            return
        if not await self.before_reply(ex, record, behaviour):
            return
        prompt = str(request["prompt"])
        seed = seed_for(prompt, request["seed"])
        job = ImageJob(
            prompt,
            seed,
            request["width"],
            request["height"],
            request["steps"],
            request["batch_size"] * request["n_iter"],
            job_id=request.get("force_task_id"),
            data={"request": request, "checkpoint": checkpoint},
        )
        await self.queue.submit(job)
        # A1111 goes on with a job whose client left: only /sdapi/v1/interrupt stops it.
        await job.done.wait()
        if job.status == DISCONNECT:
            await ex.drop_connection()
            state.finish(record, DISCONNECTED)
            return
        if job.status == ERRORED:
            await ex.respond(500, error_body("OutOfMemoryError", "", job.error or OOM_MESSAGE))
            state.finish(record, FAILED, 500)
            return
        images = self._images_of(job)
        payload = {
            "images": [base64.b64encode(image).decode() for image in images]
            if request["send_images"]
            else [],
            "parameters": request,
            "info": orjson.dumps(self._info(job, request)).decode(),
        }
        record.images = job.batch_size
        record.status = 200
        await ex.respond(200, orjson.dumps(payload))
        state.finish(record, COMPLETED)

    def _images_of(self, job: ImageJob) -> list[bytes]:
        """The job's images; an interrupted job returns what its latents show so far."""
        if job.status == SUCCEEDED:
            if self.state.behaviour.content_filtered:
                # The NSFW censor extension blacks out flagged images; a blur stands in for it.
                images = [
                    render(job.prompt, job.seed + index, job.width, job.height, "png", True)
                    for index in range(job.batch_size)
                ]
            else:
                images = list(job.images)
        elif job.status == INTERRUPTED and job.step > 0:
            images = [
                render_progress(
                    job.prompt, job.seed + i, job.width, job.height, job.progress, "png", None
                )
                for i in range(job.batch_size)
            ]
        else:
            images = []
        if len(images) > 1 and self.options.get("return_grid"):
            images.insert(0, grid(images))
        return images

    def _info(self, job: ImageJob, request: dict[str, Any]) -> dict[str, Any]:
        seeds = [job.seed + index for index in range(job.batch_size)]
        checkpoint = job.data["checkpoint"] or ""
        sampler = request["sampler_name"] or request["sampler_index"]
        infotexts = [
            f"{job.prompt}\nNegative prompt: {request['negative_prompt']}\nSteps: {job.steps},"
            f" Sampler: {sampler}, CFG scale: {request['cfg_scale']}, Seed: {seed}, Size:"
            f" {job.width}x{job.height}, Model hash: {short_hash(checkpoint)}, Model:"
            f" {checkpoint.rsplit('.', 1)[0]}, Version: {VERSION}"
            for seed in seeds
        ]
        return {
            "prompt": job.prompt,
            "all_prompts": [job.prompt] * job.batch_size,
            "negative_prompt": request["negative_prompt"],
            "all_negative_prompts": [request["negative_prompt"]] * job.batch_size,
            "seed": job.seed,
            "all_seeds": seeds,
            "subseed": job.seed + 1,
            "all_subseeds": [seed + 1 for seed in seeds],
            "subseed_strength": request["subseed_strength"],
            "width": job.width,
            "height": job.height,
            "sampler_name": sampler,
            "cfg_scale": request["cfg_scale"],
            "steps": job.steps,
            "batch_size": request["batch_size"],
            "restore_faces": bool(request["restore_faces"]),
            "face_restoration_model": None,
            "sd_model_name": checkpoint.rsplit(".", 1)[0],
            "sd_model_hash": short_hash(checkpoint),
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": request["denoising_strength"],
            "extra_generation_params": {},
            "index_of_first_image": 1
            if job.batch_size > 1 and self.options.get("return_grid")
            else 0,
            "infotexts": infotexts,
            "styles": request["styles"] or [],
            "job_timestamp": self._job_started_at,
            "clip_skip": self.options["CLIP_stop_at_last_layers"],
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
            "interrupted": job.status == INTERRUPTED,
        }

    async def _job_started(self, job: ImageJob) -> None:
        self._job_started_at = time.strftime("%Y%m%d%H%M%S")

    # --- progress and interrupt --------------------------------------------------------------

    async def progress(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        skip_image = ex.query().get("skip_current_image", "false").lower() == "true"
        job = self.queue.current
        delay = self.state.behaviour.step_delay_s
        if job is None:
            payload: dict[str, Any] = {
                "progress": 0.0,
                "eta_relative": 0.0,
                "state": {
                    "skipped": False,
                    "interrupted": False,
                    "stopping_generation": False,
                    "job": "",
                    "job_count": 0,
                    "job_timestamp": self._job_started_at or "0",
                    "job_no": 0,
                    "sampling_step": 0,
                    "sampling_steps": 0,
                },
                "current_image": None,
                "textinfo": None,
            }
        else:
            preview = None
            if not skip_image and job.step > 0:
                preview = base64.b64encode(job.preview("png")).decode()
            payload = {
                "progress": round(job.progress, 4),
                # On the stand-in's clock: the steps left times the step time.
                "eta_relative": round((job.steps - job.step) * delay, 4),
                "state": {
                    "skipped": False,
                    "interrupted": job.interrupted,
                    "stopping_generation": False,
                    "job": f"task({job.id})",
                    "job_count": 1,
                    "job_timestamp": self._job_started_at,
                    "job_no": 0,
                    "sampling_step": job.step,
                    "sampling_steps": job.steps,
                },
                "current_image": preview,
                "textinfo": None,
            }
        await ex.respond(200, orjson.dumps(payload))
        self.state.finish(record, COMPLETED, 200)

    async def interrupt(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        self.queue.interrupt()
        await ex.respond(200, orjson.dumps({}))
        self.state.finish(record, COMPLETED, 200)

    # --- models, samplers, options -----------------------------------------------------------

    async def _answer(self, ex: Exchange, payload: Any) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        await ex.respond(200, orjson.dumps(payload))
        self.state.finish(record, COMPLETED, 200)

    async def sd_models(self, ex: Exchange) -> None:
        models = [
            {
                "title": title(filename),
                "model_name": filename.rsplit(".", 1)[0],
                "hash": short_hash(filename),
                "sha256": hashlib.sha256(filename.encode()).hexdigest(),
                "filename": MODELS_DIR + filename,
                "config": None,
            }
            for filename in self.state.models
        ]
        await self._answer(ex, models)

    async def samplers(self, ex: Exchange) -> None:
        await self._answer(ex, [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS])

    async def schedulers(self, ex: Exchange) -> None:
        await self._answer(
            ex,
            [
                {
                    "name": name,
                    "label": name.replace("_", " ").title(),
                    "aliases": None,
                    "default_rho": -1,
                    "need_inner_model": False,
                }
                for name in SCHEDULERS
            ],
        )

    async def get_options(self, ex: Exchange) -> None:
        await self._answer(ex, self.options)

    async def set_options(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        try:
            changes = await ex.read_json()
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            await self._reject(ex, record, 422, orjson.dumps({"detail": "expected an object"}))
            return
        checkpoint = changes.get("sd_model_checkpoint")
        if checkpoint is not None:
            filename = self._checkpoint(checkpoint)
            if filename is None:
                await self._reject(
                    ex,
                    record,
                    500,
                    error_body("RuntimeError", "", f"model {checkpoint!r} not found"),
                )
                return
            changes["sd_model_checkpoint"] = title(filename)
        self.options.update(changes)
        await ex.respond(200, b"null")
        self.state.finish(record, COMPLETED, 200)
