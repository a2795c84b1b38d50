"""The models a caller may name (ListModels) and the live connection check (CheckStatus).

Live lists are cached per (api style, base URL, key hash) for a minute, in a
`cachetools.TTLCache` (the platform's one cache library; when full, the least recently used list
goes first). For OpenAI and Anthropic a request may name only the configured models (they are
what is priced and offered), so the live list only narrows them to those the key can reach; for
servers whose models the user chooses (OpenAI-compatible, Ollama) the live list is what the
server offers and is listed in full.
"""

from __future__ import annotations

import asyncio
import logging
import time

from cachetools import TTLCache

from chat_codecs import ModelInfo
from text_svc.config_source import TextConfig
from text_svc.generation import service_error
from text_svc.plan import USER_CHOSEN_MODELS
from text_svc.providers import ProviderClients
from upstream import Endpoint, Failure, ProviderError, Route, client_key

log = logging.getLogger(__name__)

LIVE_LIST_TTL_S = 60.0


class ModelCatalog:
    def __init__(self, clients: ProviderClients, max_entries: int = 1024) -> None:
        self._clients = clients
        self._live: TTLCache[tuple[str, str, str, bool], list[ModelInfo]] = TTLCache(
            maxsize=max_entries, ttl=LIVE_LIST_TTL_S, timer=time.monotonic
        )

    async def models(
        self, config: TextConfig, endpoint: Endpoint, timeout_s: float
    ) -> list[ModelInfo]:
        owner = config.provider
        configured = [ModelInfo(m, owner) for m in (config.models or (config.model,)) if m]
        try:
            live = await self._live_list(endpoint, timeout_s)
        except ProviderError as err:
            if err.failure is Failure.BLOCKED:
                # The base URL itself is refused (a redirect, an address not allowed): say so,
                # rather than list the configured models as if the server were merely down.
                raise service_error(err, Route(endpoint, config.model), config.mode) from None
            log.info("live model list of %s unavailable (%s); listing configured", owner, err)
            return configured
        except TimeoutError as err:
            log.info("live model list of %s unavailable (%s); listing configured", owner, err)
            return configured
        # The provider's created time, where it tells one, on the configured entries too.
        created = {m.id: m.created for m in live}
        configured = [ModelInfo(m.id, m.owned_by, created.get(m.id, 0)) for m in configured]
        if config.api_style in USER_CHOSEN_MODELS:
            seen = {m.id for m in configured}
            return configured + [m for m in live if m.id not in seen]
        narrowed = [m for m in configured if m.id in created]
        return narrowed or configured

    async def _live_list(self, endpoint: Endpoint, timeout_s: float) -> list[ModelInfo]:
        key = client_key(endpoint)
        hit = self._live.get(key)
        if hit is not None:
            return hit
        models = await self.list_now(endpoint, timeout_s)
        self._live[key] = models
        return models

    async def list_now(self, endpoint: Endpoint, timeout_s: float) -> list[ModelInfo]:
        """The provider's live list, uncached (also the connection check)."""
        lease = self._clients.acquire(endpoint)
        try:
            async with asyncio.timeout(timeout_s):
                return await lease.client.list_models()
        finally:
            self._clients.release(lease)
