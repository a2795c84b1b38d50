"""The server side every model service shares (text, multimodal, image): the lifecycle hooks
around its servicer. Beside the gRPC server live the caller-config source (kept right by the
settings-changed watcher while settings-svc is configured), the provider clients, the metering
(holds and usage events) and Redis. A service subclasses `ModelServer`, says what it logs at
open, and builds it in `create_server` with how its servicer finishes its calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from svc_common.config_resolution import ConfigSource
from svc_common.environment import ModelServiceSettings
from svc_common.grpc_server import GrpcService
from svc_common.lifecycle import Background, BackgroundTask, Service
from svc_common.metering import Metering
from svc_common.settings_changes import watch as watch_settings_changes

__all__ = ["Closeable", "ModelServer", "open_redis"]


def open_redis(settings: ModelServiceSettings) -> Any | None:
    """The service's Redis client (connects on first use); None without a redis_url."""
    if settings.redis_url is None:
        return None
    import redis.asyncio as aioredis  # the model services' extra (svc-common[redis])

    return aioredis.Redis.from_url(settings.redis_url.get_secret_value())


class Closeable(Protocol):
    async def aclose(self) -> None: ...


class ModelServer(Service):
    """`stop` lets in-flight calls finish within the grace period (then cancels them, which ends
    their streams cleanly); `close` then finishes the servicer's calls, flushes usage events
    and closes what the service opened."""

    def __init__(
        self,
        grpc_service: GrpcService,
        *,
        settings: ModelServiceSettings,
        configs: ConfigSource[Any],
        clients: Closeable,
        metering: Metering,
        redis: Any | None,
        finish_calls: Callable[[], Awaitable[None]],
    ) -> None:
        """`finish_calls`: what the servicer does once the gRPC server has stopped (e.g. end the
        streams grpc abandoned and let the others finish their clean-up)."""
        super().__init__(settings, grpc_service)
        self._model_settings = settings
        self._configs = configs
        self._clients = clients
        self._metering = metering
        self._redis = redis
        self._finish_calls = finish_calls
        self._grace: float | None = None

    def background(self) -> Background:
        settings = self._model_settings
        if self._redis is None or not settings.settings_target:
            return {}
        redis, channel, configs = self._redis, settings.settings_changed_channel, self._configs
        # Keeps the config cache right for the calls in flight; cancelled once they are done.
        return {
            "settings-changes": BackgroundTask(
                lambda: watch_settings_changes(redis, channel, configs)
            )
        }

    async def stop(self, grace: float | None = None) -> None:
        self._grace = self._model_settings.grace_seconds if grace is None else grace
        await super().stop(grace)

    async def close(self) -> None:
        await self._finish_calls()
        await self._metering.drain(timeout_s=max(self._grace or 0.0, 5.0))
        await self._clients.aclose()
        await self._configs.aclose()
        await self._metering.aclose()
        if self._redis is not None:
            await self._redis.aclose()
