"""text-svc's provider registry: which chat codec speaks each API style, and the pool of chat
clients (one per endpoint and key, each on its endpoint's one transport). The codecs are the
`chat_codecs` library's, the pool the `upstream` library's; only this table is text-svc's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp.abc import AbstractResolver

from chat_codecs import AnthropicMessages, ChatClient, ChatCodec, OllamaChat, OpenAIChat
from text_svc.environment import Settings
from upstream import ClientPool, Connect, Endpoint, TransportOptions

# API style (ResolvedConfig.api_style) → the wire protocol it speaks. Any other style is an
# OpenAI-compatible server.
CODECS: Mapping[str, ChatCodec] = {
    "openai": OpenAIChat(),
    "openai_compatible": OpenAIChat(compatible=True),
    "anthropic": AnthropicMessages(),
    "ollama": OllamaChat(),
}


def chat_client(endpoint: Endpoint, connect: Connect) -> ChatClient:
    codec = CODECS.get(endpoint.api_style, CODECS["openai_compatible"])
    return ChatClient(codec, endpoint.api_key, connect)


def transport_options(settings: Settings) -> TransportOptions:
    return TransportOptions(
        connect_timeout_s=settings.upstream_connect_timeout_s,
        # A backstop only: the attempt policy enforces time-to-first-output and idle timeouts.
        read_timeout_s=max(settings.upstream_timeout_s, settings.upstream_idle_timeout_s) + 1,
        allowed_hosts=settings.allowed_base_url_hosts,
    )


class ProviderClients(ClientPool[ChatClient]):
    """text-svc's chat clients, built from its settings."""

    def __init__(
        self,
        settings: Settings,
        max_clients: int = 256,
        *,
        resolver: Callable[[], AbstractResolver] | None = None,
    ) -> None:
        super().__init__(chat_client, transport_options(settings), max_clients, resolver=resolver)
