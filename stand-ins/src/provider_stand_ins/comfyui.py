"""The ComfyUI stand-in: ``POST /prompt`` validates and queues an API-format graph, one job runs
at a time, the ``/ws`` websocket reports ``status``, ``execution_start``, ``execution_cached``,
``executing``, ``progress``, binary preview frames, ``executed``, ``execution_success`` (or
``execution_error`` / ``execution_interrupted``) and a final ``executing {node: null}``; then
``/history/{id}`` and ``/view`` serve the images. Every route is also served under ``/api``.

It executes the txt2img graphs built from CheckpointLoaderSimple, CLIPTextEncode,
EmptyLatentImage, KSampler, VAEDecode and SaveImage/PreviewImage, reading the seed, steps, size,
batch, text and checkpoint by following the links from the output node.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from provider_stand_ins.app import Exchange, Handler, Provider
from provider_stand_ins.images import (
    ERRORED,
    MEDIA_TYPES,
    SUCCEEDED,
    ImageJob,
    JobQueue,
    render,
)
from provider_stand_ins.state import COMPLETED, REJECTED, RequestRecord

# A file to append one JSON line to per websocket `progress` event sent: its CLOCK_MONOTONIC time
# (shared by every process on the machine), the job's prompt and step. `make bench` times the
# platform's relay of each event from it.
PROGRESS_LOG_ENV = "COMFYUI_STAND_IN_PROGRESS_LOG"


def _append_line(path: str, line: dict[str, Any]) -> None:
    with open(path, "ab") as out:  # a local file, a few microseconds
        out.write(orjson.dumps(line) + b"\n")


DEFAULT_MODELS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")
VAES = ("vae-ft-mse-840000-ema-pruned.safetensors",)
SAMPLERS = (
    "euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m",
    "dpmpp_sde", "dpmpp_2m_sde", "ddim", "uni_pc", "lcm",
)  # fmt: skip
SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta")
VERSION = "0.3.66"
PREVIEW_EVENT = 1
PREVIEW_JPEG = 1
MAX_RESOLUTION = 16384
OUTPUT_CLASSES = ("SaveImage", "PreviewImage")

Spec = tuple[Any, dict[str, Any]]


def _int(default: int, low: int, high: int, step: int = 1) -> Spec:
    return "INT", {"default": default, "min": low, "max": high, "step": step}


def node_specs(models: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The node classes the stand-in executes: required inputs, outputs and category."""
    return {
        "CheckpointLoaderSimple": {
            "required": {"ckpt_name": (list(models), {})},
            "output": ["MODEL", "CLIP", "VAE"],
            "category": "loaders",
        },
        "VAELoader": {
            "required": {"vae_name": (list(VAES), {})},
            "output": ["VAE"],
            "category": "loaders",
        },
        "CLIPTextEncode": {
            "required": {"text": ("STRING", {"multiline": True}), "clip": ("CLIP", {})},
            "output": ["CONDITIONING"],
            "category": "conditioning",
        },
        "EmptyLatentImage": {
            "required": {
                "width": _int(512, 16, MAX_RESOLUTION, 8),
                "height": _int(512, 16, MAX_RESOLUTION, 8),
                "batch_size": _int(1, 1, 4096),
            },
            "output": ["LATENT"],
            "category": "latent",
        },
        "KSampler": {
            "required": {
                "model": ("MODEL", {}),
                "seed": _int(0, 0, 0xFFFFFFFFFFFFFFFF),
                "steps": _int(20, 1, 10000),
                "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1}),
                "sampler_name": (list(SAMPLERS), {}),
                "scheduler": (list(SCHEDULERS), {}),
                "positive": ("CONDITIONING", {}),
                "negative": ("CONDITIONING", {}),
                "latent_image": ("LATENT", {}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            },
            "output": ["LATENT"],
            "category": "sampling",
        },
        "VAEDecode": {
            "required": {"samples": ("LATENT", {}), "vae": ("VAE", {})},
            "output": ["IMAGE"],
            "category": "latent",
        },
        "SaveImage": {
            "required": {
                "images": ("IMAGE", {}),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "output": [],
            "category": "image",
            "output_node": True,
        },
        "PreviewImage": {
            "required": {"images": ("IMAGE", {})},
            "output": [],
            "category": "image",
            "output_node": True,
        },
    }


def object_info_entry(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "input": {"required": {key: list(value) for key, value in spec["required"].items()}},
        "input_order": {"required": list(spec["required"])},
        "output": spec["output"],
        "output_is_list": [False] * len(spec["output"]),
        "output_name": spec["output"],
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": "nodes",
        "category": spec["category"],
        "output_node": spec.get("output_node", False),
    }


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def node_error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def prompt_error(kind: str, message: str, details: str = "", node_errors: Any = None) -> bytes:
    return orjson.dumps(
        {
            "error": node_error(kind, message, details),
            "node_errors": [] if node_errors is None else node_errors,
        }
    )


class Plan:
    """What a valid graph asks for, read by following the links from its output node."""

    def __init__(self, graph: dict[str, Any], output: str) -> None:
        self.graph = graph
        self.output = output
        self.order: list[str] = []
        self._visit(output, set())
        save = graph[output]
        decode = self._source(save, "images", "VAEDecode")
        sampler_id = decode["inputs"]["samples"][0] if decode else None
        sampler = graph.get(sampler_id) if sampler_id else None
        if sampler is None or sampler.get("class_type") != "KSampler":
            raise ValueError("the output's images do not come from VAEDecode(KSampler)")
        self.sampler_id: str = sampler_id  # type: ignore[assignment]
        inputs = sampler["inputs"]
        self.seed: int = self._value(inputs["seed"])
        self.steps: int = self._value(inputs["steps"])
        positive = self._source(sampler, "positive", "CLIPTextEncode")
        negative = self._source(sampler, "negative", "CLIPTextEncode")
        latent = self._source(sampler, "latent_image", "EmptyLatentImage")
        model = self._source(sampler, "model", "CheckpointLoaderSimple")
        if positive is None or latent is None or model is None:
            raise ValueError("KSampler needs CLIPTextEncode, EmptyLatentImage and a checkpoint")
        self.text = str(self._value(positive["inputs"]["text"]))
        self.negative = str(self._value(negative["inputs"]["text"])) if negative else ""
        self.width: int = self._value(latent["inputs"]["width"])
        self.height: int = self._value(latent["inputs"]["height"])
        self.batch_size: int = self._value(latent["inputs"]["batch_size"])
        self.ckpt_name = str(self._value(model["inputs"]["ckpt_name"]))
        self.prefix = str(save["inputs"].get("filename_prefix", "ComfyUI"))
        self.kind = "output" if save["class_type"] == "SaveImage" else "temp"

    def _visit(self, node_id: str, seen: set[str]) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in self.graph[node_id]["inputs"].values():
            if is_link(value):
                self._visit(value[0], seen)
        self.order.append(node_id)

    def _source(self, node: dict[str, Any], name: str, class_type: str) -> dict[str, Any] | None:
        link = node["inputs"].get(name)
        if not is_link(link):
            return None
        source: dict[str, Any] = self.graph[link[0]]
        return source if source.get("class_type") == class_type else None

    def _value(self, value: Any) -> Any:
        # Widget values may come from primitive nodes; follow a link to its literal.
        while is_link(value):
            inputs = self.graph[value[0]]["inputs"]
            value = inputs.get("value", next(iter(inputs.values()), None))
        return value


class Socket:
    """One websocket client; sends never raise (a closed socket just stops receiving)."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self.open = True

    async def send(self, message: dict[str, Any]) -> None:
        if not self.open:
            return
        try:
            await self._send(message)
        except Exception:
            self.open = False

    async def close(self, code: int = 1001) -> None:
        await self.send({"type": "websocket.close", "code": code})
        self.open = False


class ComfyUIProvider(Provider):
    """ComfyUI's server API."""

    name = "comfyui"
    default_models = DEFAULT_MODELS
    serves_websocket = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = JobQueue(
            self.state,
            on_start=self._job_started,
            on_step=self._job_step,
            on_finish=self._job_finished,
            on_queue_change=self._queue_changed,
            disconnect_ends_job=False,
        )
        self.sockets: dict[str, list[Socket]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self._numbers = itertools.count(0)
        self._counters: dict[str, int] = {}
        self._last_graph: dict[str, Any] = {}

    def routes(self) -> dict[tuple[str, str], Handler]:
        routes: dict[tuple[str, str], Handler] = {
            ("POST", "/prompt"): self.post_prompt,
            ("GET", "/prompt"): self.get_prompt,
            ("GET", "/queue"): self.get_queue,
            ("POST", "/queue"): self.post_queue,
            ("POST", "/interrupt"): self.interrupt,
            ("GET", "/history"): self.get_history,
            ("POST", "/history"): self.post_history,
            ("GET", "/view"): self.view,
            ("GET", "/object_info"): self.object_info,
            ("GET", "/system_stats"): self.system_stats,
            ("GET", "/embeddings"): self.embeddings,
        }
        return {**routes, **{(method, "/api" + path): h for (method, path), h in routes.items()}}

    # --- plumbing ----------------------------------------------------------------------------

    async def _begin(self, ex: Exchange) -> RequestRecord | None:
        """Log the request; a stand-in given keys wants a bearer key (an auth proxy's check)."""
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        if self.state.key_accepted(record.key):
            return record
        await ex.respond(401, b"401: Unauthorized", [(b"content-type", b"text/plain")])
        self.state.finish(record, REJECTED, 401)
        return None

    async def _answer(self, ex: Exchange, record: RequestRecord, payload: Any) -> None:
        await ex.respond(200, orjson.dumps(payload))
        self.state.finish(record, COMPLETED, 200)

    async def unmatched(self, ex: Exchange) -> None:
        path = ex.path[4:] if ex.path.startswith("/api/") else ex.path
        if ex.method == "GET" and path.startswith("/history/"):
            await self.get_history(ex, path[len("/history/") :])
            return
        if ex.method == "GET" and path.startswith("/object_info/"):
            await self.object_info(ex, path[len("/object_info/") :])
            return
        record = self.state.begin(ex.method, ex.path, ex.bearer_key())
        await ex.respond(404, b"404: Not Found", [(b"content-type", b"text/plain")])
        self.state.finish(record, REJECTED, 404)

    async def send_error(
        self, ex: Exchange, record: RequestRecord, status: int, outcome: str = REJECTED
    ) -> None:
        if status >= 500:
            body = b"500 Internal Server Error\n\nServer got itself in trouble"
            await ex.respond(status, body, [(b"content-type", b"text/plain; charset=utf-8")])
        else:
            body = prompt_error("server_error", f"The server refused the prompt ({status})")
            await ex.respond(status, body, self.retry_headers(status))
        self.state.finish(record, outcome, status)

    async def broadcast(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """Send an event to one client's sockets, or to every socket when ``sid`` is None."""
        message = {
            "type": "websocket.send",
            "text": orjson.dumps({"type": event, "data": data}).decode(),
        }
        for socket in self._targets(sid):
            await socket.send(message)

    def _targets(self, sid: str | None) -> list[Socket]:
        if sid is None:
            return [socket for sockets in self.sockets.values() for socket in sockets]
        return list(self.sockets.get(sid, ()))

    def _status(self) -> dict[str, Any]:
        return {"status": {"exec_info": {"queue_remaining": self.queue.remaining}}}

    # --- websocket ---------------------------------------------------------------------------

    async def websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] not in ("/ws", "/api/ws"):
            await send({"type": "websocket.close", "code": 1008})
            return
        if (await receive())["type"] != "websocket.connect":
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        sid = query.get("clientId") or uuid.uuid4().hex
        await send({"type": "websocket.accept"})
        socket = Socket(send)
        self.sockets.setdefault(sid, []).append(socket)
        try:
            await socket.send(
                {
                    "type": "websocket.send",
                    "text": orjson.dumps(
                        {"type": "status", "data": {**self._status(), "sid": sid}}
                    ).decode(),
                }
            )
            job = self.queue.current
            if job is not None and job.data["client_id"] == sid:
                # A client that reconnects learns which node is running, as ComfyUI tells it.
                await self.broadcast(
                    "executing", self._executing(job, job.data["plan"].sampler_id), sid
                )
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            socket.open = False
            sockets = self.sockets.get(sid, [])
            if socket in sockets:
                sockets.remove(socket)
            if not sockets:
                self.sockets.pop(sid, None)

    # --- POST /prompt ------------------------------------------------------------------------

    def _validate(self, graph: Any) -> tuple[bytes, str] | tuple[None, str]:
        """(400 body, "") for a graph ComfyUI would refuse, else (None, output node id)."""
        if not isinstance(graph, dict):
            return prompt_error("invalid_prompt", "Prompt is not a dict"), ""
        specs = node_specs(self.state.models)
        for node_id, node in graph.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if class_type is None:
                return (
                    prompt_error(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    "",
                )
            if class_type not in specs:
                return (
                    prompt_error(
                        "invalid_prompt",
                        f"Cannot execute because node {class_type} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    "",
                )
        outputs = [
            node_id for node_id, node in graph.items() if node["class_type"] in OUTPUT_CLASSES
        ]
        if not outputs:
            return prompt_error("prompt_no_outputs", "Prompt has no outputs"), ""
        node_errors: dict[str, Any] = {}
        for node_id, node in graph.items():
            errors = self._node_errors(graph, node, specs[node["class_type"]])
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": outputs,
                    "class_type": node["class_type"],
                }
        if node_errors:
            return (
                prompt_error(
                    "prompt_outputs_failed_validation",
                    "Prompt outputs failed validation",
                    node_errors=node_errors,
                ),
                "",
            )
        return None, outputs[0]

    def _node_errors(
        self, graph: dict[str, Any], node: dict[str, Any], spec: dict[str, Any]
    ) -> list[dict[str, Any]]:
        errors = []
        inputs: dict[str, Any] = node.get("inputs") or {}
        if not isinstance(inputs, dict):
            inputs = {}
        node["inputs"] = inputs
        for name, (kind, options) in spec["required"].items():
            if name not in inputs:
                errors.append(
                    node_error(
                        "required_input_missing",
                        "Required input is missing",
                        name,
                        input_name=name,
                    )
                )
                continue
            value = inputs[name]
            if is_link(value):
                if value[0] not in graph:
                    errors.append(
                        node_error(
                            "exception_during_inner_validation",
                            "Exception when validating inner node",
                            f"{name}: node {value[0]} does not exist",
                            input_name=name,
                        )
                    )
                continue
            if isinstance(kind, list):
                if value not in kind:
                    errors.append(
                        node_error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{name}: '{value}' not in {kind}",
                            input_name=name,
                            input_config=[kind, options],
                            received_value=value,
                        )
                    )
            elif kind == "INT":
                if not isinstance(value, int) or isinstance(value, bool):
                    errors.append(
                        node_error(
                            "invalid_input_type",
                            "Failed to convert an input value to a INT value",
                            f"{name}, {value}, invalid literal for int()",
                            input_name=name,
                            received_value=value,
                        )
                    )
                elif value < options["min"]:
                    errors.append(
                        node_error(
                            "value_smaller_than_min",
                            f"Value {value} smaller than min of {options['min']}",
                            f"{name}",
                            input_name=name,
                            input_config=[kind, options],
                            received_value=value,
                        )
                    )
                elif value > options["max"]:
                    errors.append(
                        node_error(
                            "value_bigger_than_max",
                            f"Value {value} bigger than max of {options['max']}",
                            f"{name}",
                            input_name=name,
                            input_config=[kind, options],
                            received_value=value,
                        )
                    )
        return errors

    async def post_prompt(self, ex: Exchange) -> None:
        state = self.state
        record = await self._begin(ex)
        if record is None:
            return
        try:
            body = await ex.read_json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "prompt" not in body:
            await ex.respond(400, orjson.dumps({"error": "no prompt", "node_errors": []}))
            state.finish(record, REJECTED, 400)
            return
        graph = body["prompt"]
        refusal, output = self._validate(graph)
        plan: Plan | None = None
        if refusal is None:
            try:
                plan = Plan(graph, output)
            except (ValueError, KeyError, TypeError) as error:
                refusal = prompt_error(
                    "invalid_prompt",
                    "Cannot execute because the stand-in only runs txt2img graphs.",
                    str(error),
                )
        if refusal is not None or plan is None:
            await ex.respond(400, refusal or b"{}")
            state.finish(record, REJECTED, 400)
            return
        record.model = plan.ckpt_name
        if self.queue.full():
            body_ = prompt_error("queue_full", "The queue is full; try again later.")
            await ex.respond(503, body_)
            state.finish(record, REJECTED, 503)
            return
        if not await self.before_reply(ex, record, state.behaviour):
            return
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        number = next(self._numbers)
        client_id = body.get("client_id")
        extra_data = body.get("extra_data") or {}
        if client_id is not None:
            extra_data = {**extra_data, "client_id": client_id}
        job = ImageJob(
            plan.text,
            plan.seed,
            plan.width,
            plan.height,
            plan.steps,
            plan.batch_size,
            job_id=prompt_id,
            data={
                "number": number,
                "graph": graph,
                "client_id": client_id,
                "extra_data": extra_data,
                "plan": plan,
                "messages": [],
                "executed": [],
            },
        )
        record.images = plan.batch_size
        await ex.respond(
            200, orjson.dumps({"prompt_id": prompt_id, "number": number, "node_errors": {}})
        )
        state.finish(record, COMPLETED, 200)
        await self.queue.submit(job)

    # --- the job's events --------------------------------------------------------------------

    def _queue_item(self, job: ImageJob) -> list[Any]:
        data = job.data
        return [data["number"], job.id, data["graph"], data["extra_data"], [data["plan"].output]]

    def _executing(self, job: ImageJob, node: str | None) -> dict[str, Any]:
        if node is None:
            return {"node": None, "prompt_id": job.id}
        return {"node": node, "display_node": node, "prompt_id": job.id}

    async def _record(self, job: ImageJob, event: str, data: dict[str, Any]) -> None:
        """Send an event to the job's client and keep it for the history's ``messages``."""
        job.data["messages"].append([event, data])
        await self.broadcast(event, data, job.data["client_id"])

    def _cached(self, plan: Plan) -> list[str]:
        """Nodes whose inputs and upstream are the same as in the previous prompt."""
        cached: list[str] = []
        for node_id in plan.order:
            node = plan.graph[node_id]
            same = (
                self._last_graph.get(node_id) == node and node["class_type"] not in OUTPUT_CLASSES
            )
            upstream = all(
                value[0] in cached for value in node["inputs"].values() if is_link(value)
            )
            if same and upstream:
                cached.append(node_id)
        return cached

    async def _queue_changed(self) -> None:
        await self.broadcast("status", self._status())

    async def _job_started(self, job: ImageJob) -> None:
        plan: Plan = job.data["plan"]
        sid = job.data["client_id"]
        await self._record(job, "execution_start", {"prompt_id": job.id, "timestamp": _ms()})
        cached = self._cached(plan)
        await self._record(job, "execution_cached", {"nodes": cached, "prompt_id": job.id})
        self._last_graph = plan.graph
        executed = job.data["executed"]
        for node_id in plan.order:
            if node_id in cached:
                continue
            await self.broadcast("executing", self._executing(job, node_id), sid)
            if node_id == plan.sampler_id:
                break
            executed.append(node_id)

    async def _job_step(self, job: ImageJob) -> None:
        plan: Plan = job.data["plan"]
        sid = job.data["client_id"]
        progress = {
            "value": job.step,
            "max": job.steps,
            "prompt_id": job.id,
            "node": plan.sampler_id,
        }
        await self.broadcast("progress", progress, sid)
        log = os.environ.get(PROGRESS_LOG_ENV)
        if log:
            # After the send, so the log's time is when the event left (the file costs nothing
            # of the event's own latency).
            _append_line(log, {"t": time.monotonic(), "prompt": job.prompt, "step": job.step})
        frame = struct.pack(">II", PREVIEW_EVENT, PREVIEW_JPEG) + job.preview("jpeg")
        for socket in self._targets(sid):
            await socket.send({"type": "websocket.send", "bytes": frame})
        cut = self.state.behaviour.disconnect_after_steps
        if cut is not None and job.step == cut:
            for socket in self._targets(sid):
                await socket.close()

    async def _job_finished(self, job: ImageJob) -> None:
        plan: Plan = job.data["plan"]
        sid = job.data["client_id"]
        executed: list[str] = job.data["executed"]
        entry: dict[str, Any] = {"prompt": self._queue_item(job), "outputs": {}, "meta": {}}
        if job.status == SUCCEEDED:
            executed.append(plan.sampler_id)
            images = job.images
            if self.state.behaviour.content_filtered:
                images = [
                    render(job.prompt, job.seed + i, job.width, job.height, "png", True)
                    for i in range(job.batch_size)
                ]
            after = plan.order[plan.order.index(plan.sampler_id) + 1 :]
            for node_id in after:
                await self.broadcast("executing", self._executing(job, node_id), sid)
                executed.append(node_id)
            saved = [self._save(plan, image) for image in images]
            output = {"images": saved}
            await self.broadcast(
                "executed",
                {
                    "node": plan.output,
                    "display_node": plan.output,
                    "output": output,
                    "prompt_id": job.id,
                },
                sid,
            )
            entry["outputs"] = {plan.output: output}
            entry["meta"] = {
                plan.output: {
                    "node_id": plan.output,
                    "display_node": plan.output,
                    "parent_node": None,
                    "real_node_id": plan.output,
                }
            }
            await self._record(job, "execution_success", {"prompt_id": job.id, "timestamp": _ms()})
            status = {"status_str": "success", "completed": True}
        elif job.status == ERRORED:
            await self._record(
                job,
                "execution_error",
                {
                    "prompt_id": job.id,
                    "node_id": plan.sampler_id,
                    "node_type": "KSampler",
                    "executed": list(executed),
                    "exception_message": f"Allocation on device \n{job.error}",
                    "exception_type": "torch.OutOfMemoryError",
                    "traceback": [
                        '  File "/ComfyUI/execution.py", line 496, in execute\n',
                        '  File "/ComfyUI/comfy/samplers.py", line 1104, in sample\n',
                    ],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": _ms(),
                },
            )
            status = {"status_str": "error", "completed": False}
        else:
            await self._record(
                job,
                "execution_interrupted",
                {
                    "prompt_id": job.id,
                    "node_id": plan.sampler_id,
                    "node_type": "KSampler",
                    "executed": list(executed),
                    "timestamp": _ms(),
                },
            )
            status = {"status_str": "error", "completed": False}
        self._last_graph = plan.graph if job.status == SUCCEEDED else {}
        entry["status"] = {**status, "messages": job.data["messages"]}
        self.history[job.id] = entry
        # ComfyUI's worker ends every prompt with this, whatever happened: clients wait on it.
        await self.broadcast("executing", self._executing(job, None), sid)

    def _save(self, plan: Plan, image: bytes) -> dict[str, str]:
        subfolder, _, prefix = plan.prefix.rpartition("/")
        counter = self._counters.get(plan.prefix, 0) + 1
        self._counters[plan.prefix] = counter
        filename = f"{prefix}_{counter:05d}_.png"
        self.files[(plan.kind, subfolder, filename)] = image
        return {"filename": filename, "subfolder": subfolder, "type": plan.kind}

    # --- queue, history, interrupt -----------------------------------------------------------

    async def get_prompt(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is not None:
            await self._answer(ex, record, {"exec_info": {"queue_remaining": self.queue.remaining}})

    async def get_queue(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        running = [self._queue_item(self.queue.current)] if self.queue.current else []
        pending = [self._queue_item(job) for job in self.queue.pending]
        await self._answer(ex, record, {"queue_running": running, "queue_pending": pending})

    async def post_queue(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        body = await self._json_object(ex)
        if body.get("clear"):
            for job in list(self.queue.pending):
                await self.queue.remove(job.id)
        for prompt_id in body.get("delete") or ():
            await self.queue.remove(str(prompt_id))
        await ex.respond(200, b"", [])
        self.state.finish(record, COMPLETED, 200)

    async def interrupt(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        body = await self._json_object(ex)
        prompt_id = body.get("prompt_id")
        self.queue.interrupt(str(prompt_id) if prompt_id else None)
        await ex.respond(200, b"", [])
        self.state.finish(record, COMPLETED, 200)

    async def get_history(self, ex: Exchange, prompt_id: str | None = None) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        if prompt_id is not None:
            entry = self.history.get(prompt_id)
            await self._answer(ex, record, {prompt_id: entry} if entry else {})
            return
        items = list(self.history.items())
        limit = ex.query().get("max_items")
        if limit and limit.isdigit():
            items = items[-int(limit) :]
        await self._answer(ex, record, dict(items))

    async def post_history(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        body = await self._json_object(ex)
        if body.get("clear"):
            self.history.clear()
        for prompt_id in body.get("delete") or ():
            self.history.pop(str(prompt_id), None)
        await ex.respond(200, b"", [])
        self.state.finish(record, COMPLETED, 200)

    async def _json_object(self, ex: Exchange) -> dict[str, Any]:
        try:
            body = await ex.read_json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    # --- files and info ----------------------------------------------------------------------

    async def view(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        query = ex.query()
        filename = query.get("filename", "")
        subfolder = query.get("subfolder", "")
        kind = query.get("type", "output")
        if not filename or filename[0] == "/" or ".." in filename or ".." in subfolder:
            await ex.respond(400, b"", [])
            self.state.finish(record, REJECTED, 400)
            return
        image = self.files.get((kind, subfolder, filename))
        if image is None:
            await ex.respond(404, b"404: Not Found", [(b"content-type", b"text/plain")])
            self.state.finish(record, REJECTED, 404)
            return
        headers = [
            (b"content-type", MEDIA_TYPES["png"].encode()),
            (b"content-disposition", f'filename="{filename}"'.encode()),
        ]
        await ex.respond(200, image, headers)
        self.state.finish(record, COMPLETED, 200)

    async def object_info(self, ex: Exchange, class_type: str | None = None) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        specs = node_specs(self.state.models)
        info = {name: object_info_entry(name, spec) for name, spec in specs.items()}
        if class_type is not None:
            info = {class_type: info[class_type]} if class_type in info else {}
        await self._answer(ex, record, info)

    async def system_stats(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is None:
            return
        gib = 1024**3
        await self._answer(
            ex,
            record,
            {
                "system": {
                    "os": "posix",
                    "ram_total": 32 * gib,
                    "ram_free": 24 * gib,
                    "comfyui_version": VERSION,
                    "required_frontend_version": "1.28.0",
                    "python_version": "3.12.3 (main) [GCC 13.2.0]",
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 Stand-in GPU : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 24 * gib,
                        "vram_free": 20 * gib,
                        "torch_vram_total": 2 * gib,
                        "torch_vram_free": gib,
                    }
                ],
            },
        )

    async def embeddings(self, ex: Exchange) -> None:
        record = await self._begin(ex)
        if record is not None:
            await self._answer(ex, record, [])


def _ms() -> int:
    return int(time.time() * 1000)
