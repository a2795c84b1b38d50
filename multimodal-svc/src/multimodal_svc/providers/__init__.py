"""multimodal-svc's provider registry: which chat codec speaks each API style (images on: every
codec encodes ImageParts in its provider's style), and the pool of chat clients built from its
settings. The codecs are `chat_codecs`', the pool `upstream`'s; only this table is ours."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp.abc import AbstractResolver

from chat_codecs import AnthropicMessages, ChatClient, ChatCodec, OllamaChat, OpenAIChat
from multimodal_svc.environment import Settings
from upstream import ClientPool, Connect, Endpoint, TransportOptions

CODECS: Mapping[str, ChatCodec] = {
    "openai": OpenAIChat(),
    "openai_compatible": OpenAIChat(compatible=True),  # LM Studio, vLLM, Ollama's /v1
    "anthropic": AnthropicMessages(),
    "ollama": OllamaChat(),  # native /api/chat: raw base64 `images`
}


def chat_client(endpoint: Endpoint, connect: Connect) -> ChatClient:
    codec = CODECS.get(endpoint.api_style, CODECS["openai_compatible"])
    return ChatClient(codec, endpoint.api_key, connect)


class ProviderClients(ClientPool[ChatClient]):
    def __init__(
        self,
        settings: Settings,
        max_clients: int = 256,
        *,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        options = TransportOptions(
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=max(settings.upstream_timeout_s, settings.upstream_idle_timeout_s) + 1,
            allowed_hosts=settings.allowed_base_url_hosts,
        )
        super().__init__(chat_client, options, max_clients, resolver=resolver)
