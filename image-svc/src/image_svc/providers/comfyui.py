"""ComfyUI: a workflow template filled with the job, `POST /prompt` with our `client_id`, then the
websocket's events for our prompt (status → queue position, progress, binary preview frames,
executed, execution_error / execution_interrupted, and `executing {node: null}` as the end);
images from `/history/{id}` and `/view`. A caller that goes away takes its prompt off the queue
(`POST /queue {delete}`) or interrupts it if it runs. Models from `/object_info`.

The websocket goes to the same place the HTTP transport would: for a user's base URL the host is
resolved and every address checked (svc_common.addresses) and the socket connected to a checked
address, so a name that rebinds between the check and the connect cannot reach an internal host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import struct
import uuid
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from yarl import URL

from image_svc.providers.base import Event, Final, Job, Preview, Progress, Queued
from image_svc.providers.workflows import WorkflowError, fill
from svc_common.addresses import address_refusal, name_refusal, normalise_host
from svc_common.logging import scrub
from upstream import Connect, Endpoint, Failure, ProviderError

_PREVIEW_TYPES = {1: "image/jpeg", 2: "image/png"}


def _blocked(reason: str) -> ProviderError:
    return ProviderError(
        Failure.BLOCKED, f"the base URL is not allowed at connect time: {reason}", param="base_url"
    )


async def open_websocket(
    url: str,
    headers: Mapping[str, str],
    *,
    check_addresses: bool,
    allowed_hosts: Collection[str],
    timeout_s: float,
) -> ClientConnection:
    """A websocket to `url`; for a user's base URL only to an address the platform allows."""
    parsed = URL(url)
    host = normalise_host(parsed.raw_host or "")
    sock: socket.socket | None = None
    if check_addresses and host not in allowed_hosts:
        refusal = name_refusal(host) if host else "the base URL has no host"
        if refusal is not None:
            raise _blocked(refusal)
        port = parsed.port or (443 if parsed.scheme == "wss" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
            )
        except (OSError, TimeoutError):
            raise ProviderError(Failure.UNAVAILABLE, "could not reach the server") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        refusal = address_refusal(host, addresses)
        if refusal is not None or not infos:
            raise _blocked(refusal or f"host {host} does not resolve")
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout_s)
        except (OSError, TimeoutError):
            sock.close()
            raise ProviderError(Failure.UNAVAILABLE, "could not reach the server") from None
    try:
        return await connect(
            url,
            sock=sock,
            additional_headers=dict(headers),
            open_timeout=timeout_s,
            max_size=64 * 1024 * 1024,
            ssl=ssl.create_default_context() if parsed.scheme == "wss" else None,
            server_hostname=host if parsed.scheme == "wss" and sock is not None else None,
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
        if sock is not None:
            sock.close()
        raise ProviderError(Failure.UNAVAILABLE, "could not open ComfyUI's websocket") from None


class ComfyUIImages:
    def __init__(
        self,
        endpoint: Endpoint,
        connect: Connect,
        *,
        templates: Mapping[str, Mapping[str, Any]],
        allowed_hosts: Collection[str],
        connect_timeout_s: float,
    ) -> None:
        self._headers = {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._http = connect(self._headers)
        self._endpoint = endpoint
        self._templates = templates
        self._allowed_hosts = allowed_hosts
        self._connect_timeout_s = connect_timeout_s

    def _graph(self, job: Job) -> dict[str, Any]:
        template = self._templates.get(job.workflow)
        if template is None:
            raise WorkflowError(
                f"no ComfyUI workflow named {job.workflow!r}; the operator offers:"
                f" {', '.join(sorted(self._templates))}"
            )
        values = {
            "prompt": job.prompt,
            "negative_prompt": job.negative_prompt,
            "seed": job.seed if job.seed is not None else 0,
            "steps": job.steps,
            "scale": job.cfg_scale,
            "sampler": job.sampler or "euler",
            "model": job.model,
            "width": job.width,
            "height": job.height,
            "batch_size": job.n,
        }
        return fill(template, values)

    async def run(self, job: Job) -> AsyncIterator[Event]:
        graph = self._graph(job)
        client_id = uuid.uuid4().hex
        ws_url = str(
            URL(self._http.base_url + "/ws")
            .with_scheme("wss" if self._http.base_url.startswith("https") else "ws")
            .with_query(clientId=client_id)
        )
        # The socket first: events for the prompt may come as soon as it is queued.
        ws = await open_websocket(
            ws_url,
            self._headers,
            check_addresses=self._endpoint.user_base_url,
            allowed_hosts=self._allowed_hosts,
            timeout_s=self._connect_timeout_s,
        )
        prompt_id = ""
        running = False
        finished = False
        try:
            answer = await self._http.post("/prompt", {"prompt": graph, "client_id": client_id})
            prompt_id = str(answer.get("prompt_id") or "")
            if not prompt_id:
                raise ProviderError(Failure.ERROR, "ComfyUI queued the prompt without an id")
            position = await self._position(prompt_id)
            if position is not None and position > 0:
                yield Queued(position)
            outputs: list[dict[str, Any]] = []
            async for message in ws:
                if isinstance(message, bytes):
                    if running and len(message) > 8:
                        event, kind = struct.unpack(">II", message[:8])
                        if event == 1 and kind in _PREVIEW_TYPES:
                            yield Preview(message[8:], _PREVIEW_TYPES[kind])
                    continue
                payload = orjson.loads(message)
                kind, data = payload.get("type"), payload.get("data") or {}
                if kind == "status":
                    if not running:
                        position = await self._position(prompt_id)
                        if position is not None:
                            yield Queued(position)
                    continue
                if data.get("prompt_id") != prompt_id:
                    continue
                if kind == "execution_start":
                    running = True
                elif kind == "progress":
                    running = True
                    yield Progress(int(data.get("value") or 0), int(data.get("max") or job.steps))
                elif kind == "executed":
                    images = (data.get("output") or {}).get("images") or []
                    outputs.extend(i for i in images if isinstance(i, dict))
                elif kind == "execution_error":
                    message_text = scrub(str(data.get("exception_message") or ""))[:300]
                    raise ProviderError(
                        Failure.ERROR,
                        f"the workflow failed in {data.get('node_type', 'a node')}: "
                        f"{message_text.strip() or data.get('exception_type', 'error')}",
                    )
                elif kind == "execution_interrupted":
                    raise ProviderError(
                        Failure.ERROR, "the job was interrupted on the ComfyUI server"
                    )
                elif kind == "executing" and data.get("node") is None:
                    break
            else:
                raise ProviderError(Failure.ERROR, "ComfyUI closed its websocket mid-job")
            if not outputs:
                outputs = await self._history_images(prompt_id)
            finished = True
            for index, image in enumerate(outputs[: job.n] if len(outputs) > job.n else outputs):
                query = urlencode(
                    {
                        "filename": image.get("filename", ""),
                        "subfolder": image.get("subfolder", ""),
                        "type": image.get("type", "output"),
                    }
                )
                data, _ = await self._http.fetch("GET", f"/view?{query}")
                yield Final(data, index, seed=job.seed + index if job.seed is not None else None)
        except websockets.exceptions.ConnectionClosed:
            raise ProviderError(Failure.ERROR, "ComfyUI closed its websocket mid-job") from None
        finally:
            if prompt_id and not finished:
                await asyncio.shield(self._cancel(prompt_id, running))
            await ws.close()

    async def _position(self, prompt_id: str) -> int | None:
        """Jobs ahead of ours (the running one included); None once ours is no longer waiting."""
        queue = await self._http.get("/queue")
        ahead = len(queue.get("queue_running") or [])
        pending = sorted(queue.get("queue_pending") or [], key=lambda item: item[0])
        for item in pending:
            if len(item) > 1 and item[1] == prompt_id:
                return ahead
            ahead += 1
        return None

    async def _history_images(self, prompt_id: str) -> list[dict[str, Any]]:
        history = await self._http.get(f"/history/{prompt_id}")
        entry = history.get(prompt_id) or {}
        images: list[dict[str, Any]] = []
        for output in (entry.get("outputs") or {}).values():
            images.extend(i for i in output.get("images") or [] if isinstance(i, dict))
        return images

    async def _cancel(self, prompt_id: str, running: bool) -> None:
        with contextlib.suppress(ProviderError):
            await self._http.post("/queue", {"delete": [prompt_id]})
        if running:  # never another prompt: the interrupt names ours
            with contextlib.suppress(ProviderError):
                await self._http.post("/interrupt", {"prompt_id": prompt_id})

    async def models(self) -> list[str]:
        info = await self._http.get("/object_info/CheckpointLoaderSimple")
        node = info.get("CheckpointLoaderSimple") or {}
        names = ((node.get("input") or {}).get("required") or {}).get("ckpt_name") or [[]]
        return [str(name) for name in names[0]] if isinstance(names[0], list) else []

    async def aclose(self) -> None:
        await self._http.aclose()
