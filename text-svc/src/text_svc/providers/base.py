"""The one interface every provider adapter implements, and the normalised events it produces.

An adapter turns a ChatCall into provider HTTP and the provider's answer into `Delta`s followed by
one `Finish`. It classifies every upstream failure as a ProviderError; retries, timeouts, fallback
and the mapping to gRPC statuses live in text_svc.generation, the same for every provider.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

# Failures are the shared provider plumbing's (upstream), named here for the adapters' callers.
from upstream import Failure, ProviderError, ProviderTransport

__all__ = [
    "ChatCall",
    "Completion",
    "Connect",
    "Delta",
    "Endpoint",
    "Failure",
    "Finish",
    "Message",
    "ModelInfo",
    "ProviderAdapter",
    "ProviderError",
    "TokenUsage",
]


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant
    content: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One chat completion, provider-neutral. None means: leave it to the provider."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    finish_reason: str  # stop | length | content_filter
    usage: TokenUsage | None  # None: the provider sent none (the caller estimates)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    finish_reason: str
    usage: TokenUsage | None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and as whom to call a provider: the identity of one reusable client."""

    provider: str
    api_style: str  # openai | anthropic | openai_compatible | ollama
    base_url: str
    api_key: str = field(repr=False)
    # The base URL came from the user's config (not the operator's environment): every address
    # it connects to must be public unless the operator allow-listed its host.
    user_base_url: bool = False


# How an adapter gets its endpoint's one transport: called once, with the provider's auth headers.
Connect = Callable[[Mapping[str, str]], ProviderTransport]


class ProviderAdapter(Protocol):
    """One provider client, bound to one Endpoint and reused across requests."""

    def stream(self, call: ChatCall) -> AsyncGenerator[Delta | Finish, None]:
        """Deltas, then exactly one Finish; raises ProviderError. Closing the iterator early
        (aclose, or cancellation) closes the upstream HTTP stream."""
        ...

    async def complete(self, call: ChatCall) -> Completion:
        """The whole answer in one upstream call (the lean path for Generate)."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """The provider's live model list for this key (also the cheap connection check)."""
        ...

    async def aclose(self) -> None: ...
