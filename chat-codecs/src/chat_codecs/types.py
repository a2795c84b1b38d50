"""The provider-neutral chat request and the normalised stream every codec produces.

A message's content is a tuple of parts: text, images, tool calls (an assistant's) and tool
results (a `tool` message's). Tools, tool choice and the response format are in OpenAI's shapes;
each codec translates them to its protocol or refuses what it cannot carry (a 400 that says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image given as bytes (with its media type) or as an https URL. Which one a provider
    takes is its codec's concern: Ollama takes bytes only, so URLs must be fetched first."""

    data: bytes = field(default=b"", repr=False)
    media_type: str = ""  # image/png | image/jpeg | image/gif | image/webp, with `data`
    url: str = ""
    detail: str = ""  # OpenAI's low | high | auto; "" leaves it to the provider


@dataclass(frozen=True, slots=True)
class ToolCallPart:
    """A tool call in an assistant message, as OpenAI names it: `arguments` is a JSON string."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResultPart:
    """The answer to one tool call (the content of a `tool` message)."""

    tool_call_id: str
    content: str


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: tuple[Part, ...]
    name: str = ""

    @classmethod
    def of_text(cls, role: str, text: str, name: str = "") -> Message:
        return cls(role, (TextPart(text),), name)

    @property
    def text(self) -> str:
        """The message's text parts, joined (what a text-only protocol field carries)."""
        parts = self.content
        if len(parts) == 1 and isinstance(parts[0], TextPart):
            return parts[0].text
        return "".join(p.text for p in parts if isinstance(p, TextPart))


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call (OpenAI's `{"type": "function", "function": ...}`)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)  # a JSON schema
    strict: bool = False  # OpenAI's strict schema adherence; other protocols have no such flag


@dataclass(frozen=True, slots=True)
class ChatRequest:
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
    tools: tuple[Tool, ...] = ()
    # OpenAI's forms: "auto" | "none" | "required" | {"type": "function", "function": {"name"}}
    tool_choice: str | Mapping[str, Any] | None = None
    # OpenAI's forms: {"type": "text" | "json_object"} | {"type": "json_schema", "json_schema"}
    response_format: Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int
    output_tokens: int


# OpenAI's token logprobs, as its `choices[].logprobs.content` carries them:
# [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]
Logprobs = tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    logprobs: Logprobs = ()  # of this piece's tokens, when asked for and given


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call `index`: the first carries its id and name, the rest more arguments
    (a JSON string in pieces, as OpenAI streams it)."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Finish:
    finish_reason: str  # stop | length | content_filter | tool_calls
    usage: TokenUsage | None  # None: the provider sent none (the caller estimates)


StreamEvent = Delta | ToolCallDelta | Finish


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer."""

    text: str
    finish_reason: str
    usage: TokenUsage | None
    tool_calls: tuple[ToolCallPart, ...] = ()
    logprobs: Logprobs = ()


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    owned_by: str = ""
    created: int = 0  # unix seconds, as the provider tells it; 0 when it does not
