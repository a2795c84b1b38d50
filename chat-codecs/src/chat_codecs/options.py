"""What a chat request asks for beyond its messages — tools, tool choice, parallel tool calls,
response format, logprobs — checked once for every chat model service (text-svc and
multimodal-svc take the same text.v1 fields), and what these add to a credit hold's input bound.
Every rejection is an InvalidArgument naming the parameter."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from chat_codecs.types import Message, Part, TextPart, Tool, ToolCallPart, ToolResultPart
from svc_common.errors import InvalidArgument

TOOL_CHOICES = frozenset({"", "auto", "none", "required", "function"})
RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})
MAX_TOOLS = 128  # OpenAI's limit
MAX_TOP_LOGPROBS = 20
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class ToolSpec(Protocol):
    """A text.v1.Tool (multimodal.v1 uses the same message)."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters_json(self) -> str: ...
    @property
    def strict(self) -> bool: ...


class ToolCallSpec(Protocol):
    """A text.v1.ToolCall."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


class OptionsRequest(Protocol):
    """The fields text.v1.GenerateRequest and multimodal.v1.GenerateRequest share (11-17)."""

    @property
    def tools(self) -> Sequence[ToolSpec]: ...
    @property
    def tool_choice(self) -> str: ...
    @property
    def tool_choice_function(self) -> str: ...
    @property
    def parallel_tool_calls(self) -> bool: ...
    @property
    def response_format_json(self) -> str: ...
    @property
    def logprobs(self) -> bool: ...
    @property
    def top_logprobs(self) -> int: ...
    def HasField(self, field_name: Any) -> bool: ...


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """The checked options, as ChatRequest takes them, and the input they add to a hold."""

    tools: tuple[Tool, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    # Tool definitions and the response schema are input the provider reads (and bills) too.
    input_bytes: int = 0


def chat_options(request: OptionsRequest) -> ChatOptions:
    tools = _tools(request.tools)
    tool_choice = _tool_choice(request.tool_choice, request.tool_choice_function, tools)
    response_format = _response_format(request.response_format_json)
    top_logprobs = None
    if request.HasField("top_logprobs"):
        if not request.logprobs:
            raise InvalidArgument("top_logprobs needs logprobs: true", param="top_logprobs")
        top_logprobs = request.top_logprobs
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgument(
                f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs"
            )
    input_bytes = sum(
        len(t.name) + len(t.description.encode()) + len(t.parameters_json.encode())
        for t in request.tools
    )
    input_bytes += len(request.response_format_json.encode())
    return ChatOptions(
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        parallel_tool_calls=(
            request.parallel_tool_calls if request.HasField("parallel_tool_calls") else None
        ),
        logprobs=request.logprobs,
        top_logprobs=top_logprobs,
        input_bytes=input_bytes,
    )


def tool_message(
    where: str, role: str, tool_call_id: str, text: str, tool_calls: Sequence[ToolCallSpec]
) -> tuple[Part, ...] | None:
    """The parts of a tool message (its result) or of an assistant's tool calls (its text, then
    the calls); None for any other message. `where` is the message's path, e.g. messages[2]."""
    if role == "tool":
        if not tool_call_id:
            raise InvalidArgument(
                f"{where} is a tool message: it needs the tool_call_id it answers",
                param=f"{where}.tool_call_id",
            )
        return (ToolResultPart(tool_call_id, text),)
    if not tool_calls:
        return None
    if role != "assistant":
        raise InvalidArgument(
            f"{where}: only assistant messages carry tool_calls", param=f"{where}.tool_calls"
        )
    parts: list[Part] = [TextPart(text)] if text else []
    parts.extend(ToolCallPart(c.id, c.name, c.arguments) for c in tool_calls)
    return tuple(parts)


def input_bytes(message: Message) -> int:
    """A message's text, tool calls and tool results in UTF-8 bytes (a bound on their tokens)."""
    size = 0
    for part in message.content:
        if isinstance(part, TextPart):
            size += len(part.text.encode())
        elif isinstance(part, ToolCallPart):
            size += len(part.id) + len(part.name) + len(part.arguments.encode())
        elif isinstance(part, ToolResultPart):
            size += len(part.tool_call_id) + len(part.content.encode())
    return size


def _json_object(text: str, param: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise InvalidArgument(f"{param} must be a JSON object", param=param) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{param} must be a JSON object", param=param)
    return value


def _tools(specs: Sequence[ToolSpec]) -> tuple[Tool, ...]:
    if len(specs) > MAX_TOOLS:
        raise InvalidArgument(f"at most {MAX_TOOLS} tools are allowed", param="tools")
    tools = []
    names: set[str] = set()
    for i, t in enumerate(specs):
        if not _FUNCTION_NAME.match(t.name):
            raise InvalidArgument(
                f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'",
                param=f"tools[{i}].function.name",
            )
        if t.name in names:
            raise InvalidArgument(
                f"tools[{i}].function.name {t.name!r} is given twice",
                param=f"tools[{i}].function.name",
            )
        names.add(t.name)
        parameters = _json_object(t.parameters_json, f"tools[{i}].function.parameters")
        tools.append(Tool(t.name, t.description, parameters, t.strict))
    return tuple(tools)


def _tool_choice(
    choice: str, function: str, tools: tuple[Tool, ...]
) -> str | Mapping[str, Any] | None:
    if choice not in TOOL_CHOICES:
        raise InvalidArgument(
            "tool_choice must be 'auto', 'none', 'required' or a named function",
            param="tool_choice",
        )
    if not choice:
        return None
    if choice in ("required", "function") and not tools:
        raise InvalidArgument(
            f"tool_choice {choice!r} needs tools: offer at least one", param="tool_choice"
        )
    if choice == "function":
        if function not in {t.name for t in tools}:
            raise InvalidArgument(
                f"tool_choice names {function[:64]!r}, which is not one of the tools",
                param="tool_choice",
            )
        return {"type": "function", "function": {"name": function}}
    return choice


def _response_format(text: str) -> Mapping[str, Any] | None:
    if not text:
        return None
    response_format = _json_object(text, "response_format")
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMATS:
        raise InvalidArgument(
            f"response_format.type must be 'text', 'json_object' or 'json_schema', "
            f"not {str(kind)[:32]!r}",
            param="response_format.type",
        )
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidArgument(
                "response_format.json_schema needs a name (and a schema)",
                param="response_format.json_schema",
            )
        if not isinstance(spec.get("schema", {}), dict):
            raise InvalidArgument(
                "response_format.json_schema.schema must be a JSON schema object",
                param="response_format.json_schema.schema",
            )
    return None if kind == "text" else response_format
