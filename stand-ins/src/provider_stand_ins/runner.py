"""``StandIn``: one provider stand-in served by uvicorn inside the running asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Self

import uvicorn

from provider_stand_ins.anthropic import AnthropicProvider
from provider_stand_ins.app import Provider, StandInApp
from provider_stand_ins.automatic1111 import Automatic1111Provider
from provider_stand_ins.behaviour import Behaviour
from provider_stand_ins.comfyui import ComfyUIProvider
from provider_stand_ins.ollama import OllamaProvider
from provider_stand_ins.openai_images import OpenAIImagesProvider
from provider_stand_ins.stability import StabilityProvider
from provider_stand_ins.state import RequestRecord, StandInState

PROVIDERS: dict[str, type[Provider]] = {
    # The OpenAI stand-in serves chat completions and the images API, as OpenAI does.
    "openai": OpenAIImagesProvider,
    "anthropic": AnthropicProvider,
    "ollama": OllamaProvider,
    "stability": StabilityProvider,
    "automatic1111": Automatic1111Provider,
    "comfyui": ComfyUIProvider,
}
# The base URL each provider's official SDK (or the OpenAI SDK, for Ollama) expects; the image
# servers' clients take the server root.
SDK_PATHS = {
    "openai": "/v1",
    "anthropic": "",
    "ollama": "/v1",
    "stability": "",
    "automatic1111": "",
    "comfyui": "",
}
# Servers whose provider open by default, as the real ones do, unless keys are given.
OPEN_WITHOUT_KEYS = frozenset({"ollama", "automatic1111", "comfyui"})


def provider_serves_websocket(provider: Provider) -> bool:
    return bool(getattr(provider, "serves_websocket", False))


class _Server(uvicorn.Server):
    """uvicorn without signal handling of its own, telling waiting requests when it stops."""

    def __init__(self, config: uvicorn.Config, state: StandInState) -> None:
        super().__init__(config)
        self._state = state
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The owner of the loop decides what a signal means (the CLI stops every stand-in).
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closing = self._state.closing
        if closing is not None and not closing.done():
            closing.set_result(None)
        await super().shutdown(sockets)


class StandIn:
    """A provider stand-in on ``host:port`` (port 0 picks a free one).

    ``keys`` are the accepted API keys (an Ollama, Automatic1111 or ComfyUI stand-in without keys
    accepts any, as those servers do by default). ``models`` replaces the provider's default
    model list. Knobs may be given as a ``Behaviour`` or as keyword arguments (``chunks=5,
    error_status=429, ...``).

        async with StandIn("openai", keys={"sk-test"}, chunks=5) as stand_in:
            client = openai.AsyncOpenAI(base_url=stand_in.sdk_base_url, api_key="sk-test")
    """

    def __init__(
        self,
        provider: str,
        *,
        keys: Iterable[str] = (),
        models: Iterable[str] | None = None,
        behaviour: Behaviour | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_size: int = 10_000,
        **knobs: Any,
    ) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
        provider_class = PROVIDERS[provider]
        keys = frozenset(keys)
        if provider in OPEN_WITHOUT_KEYS and not keys:
            knobs.setdefault("accept_any_key", True)
        self.provider = provider
        self.host = host
        self.state = StandInState(
            provider,
            keys=keys,
            models=provider_class.default_models if models is None else models,  # type: ignore[attr-defined]
            behaviour=(behaviour or Behaviour()).updated(knobs),
            log_size=log_size,
        )
        self.app = StandInApp(provider_class(self.state))
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, standalone: bool = False) -> Self:
        """Serve in the running loop; returns once the server accepts connections.

        The stand-in never touches signal handlers. In-process (the default) it leaves logging
        configuration alone; ``standalone`` (a process of its own) turns access logs off.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            http="httptools",
            # Only ComfyUI speaks websocket; the others answer a websocket like a plain 404.
            ws="websockets-sansio" if provider_serves_websocket(self.app.provider) else "none",
            lifespan="off",
            log_config=None,
            # Both change process-wide loggers, so only a process of its own sets them.
            log_level="warning" if standalone else None,
            access_log=not standalone,
            server_header=False,
            backlog=4096,
            timeout_graceful_shutdown=2,
        )
        self.state.closing = asyncio.get_running_loop().create_future()
        self._server = _Server(config, self.state)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await self._task  # re-raises why the server could not start
            raise RuntimeError(f"{self.provider} stand-in stopped while starting")
        return self

    async def stop(self) -> None:
        """Stop serving; requests still waiting (``hang``, delays) end at once."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            if self._socket is not None:
                self._socket.close()
            self._server = None
            self._task = None

    async def serve_forever(self) -> None:
        """Wait until the server stops (for the command line)."""
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def sdk_base_url(self) -> str:
        """What to pass as ``base_url`` to the provider's SDK (OpenAI SDK for Ollama)."""
        return self.base_url + SDK_PATHS[self.provider]

    # --- knobs and request log ---------------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        return self.state.behaviour

    def set_behaviour(self, **knobs: Any) -> Behaviour:
        return self.state.set_behaviour(**knobs)

    def reset(self) -> None:
        self.state.reset()

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    @property
    def last_request(self) -> RequestRecord | None:
        return self.state.last_request

    @property
    def stats(self) -> dict[str, int]:
        return self.state.stats

    # A timeout argument keeps test code to one line: await stand_in.wait_for(cond, 2).
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        await self.state.wait_for(predicate, timeout)
