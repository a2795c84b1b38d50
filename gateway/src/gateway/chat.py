"""OpenAI chat completions <-> text.v1: the request body to a GenerateRequest, the answer back
to OpenAI's exact `chat.completion` shape (streams, `chat.completion.chunk`: gateway.streaming).

Validated by hand on the orjson-parsed body: it is the hot path, and the messages say exactly
which field is wrong, as OpenAI's do. Unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import ApiError, invalid
from grpc_stubs.text.v1 import text_pb2

_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
_MAX_TOP_LOGPROBS = 20
_TOOL_CHOICES = ("auto", "none", "required")
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# OpenAI parameters the platform cannot honour on every provider: each is refused with its reason
# rather than dropped (a dropped one answers a 200 the caller did not ask for). `user`,
# `metadata` and `store` are dropped on purpose (docs/api.md): store: true on the platform's key
# would keep users' prompts in the platform's provider account.
NOT_OFFERED = {
    "functions": "the deprecated function calling is not offered: send 'tools' instead",
    "function_call": "the deprecated function calling is not offered: send 'tool_choice' instead",
    "logit_bias": "logit_bias is not offered: token ids differ between providers",
    "audio": "audio output is not offered",
    "prediction": "predicted outputs are not offered",
    "web_search_options": "web search is not offered",
    "service_tier": "service tiers are not offered: the platform's account decides",
    "reasoning_effort": "reasoning_effort is not offered",
    "verbosity": "verbosity is not offered",
}
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_MAX_STOP_SEQUENCES = 4


@dataclass(slots=True)
class ChatRequest:
    generate: text_pb2.GenerateRequest
    stream: bool
    include_usage: bool


def type_error(param: str, expected: str) -> ApiError:
    return invalid(
        f"invalid type for '{param}': expected {expected}", param=param, code="invalid_type"
    )


def number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(name, "a number")
    return float(value)


def _integer(body: dict[str, Any], name: str, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, "an integer")
    if not minimum <= value <= maximum:
        raise invalid(
            f"invalid value for '{name}': must be between {minimum} and {maximum}",
            param=name,
            code="invalid_value",
        )
    return value


def _content(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise type_error(param, "a string or an array of content parts")
    texts: list[str] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise type_error(where, "an object")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise type_error(f"{where}.text", "a string")
            texts.append(text)
        elif kind in ("image_url", "input_image", "image"):
            raise invalid(
                "the text proxy does not accept images: send image content parts to "
                "/api/multimodal-proxy/v1/chat/completions",
                param=f"{where}.type",
                code="invalid_value",
            )
        else:
            raise invalid(
                f"invalid value for '{where}.type': the text proxy accepts only 'text' parts",
                param=f"{where}.type",
                code="invalid_value",
            )
    return "\n".join(texts)


@dataclass(slots=True)
class MessageFields:
    """One OpenAI message's checked fields; `content` as sent (None only beside tool calls)."""

    role: str
    name: str
    content: Any
    tool_calls: list[text_pb2.ToolCall]
    tool_call_id: str


def message_fields(raw: Any) -> list[MessageFields]:
    """The checked role, name, tool calls and tool_call_id of each message (both chat routes);
    the caller reads each `content` its own way."""
    if raw is None:
        raise invalid(
            "missing required parameter 'messages'",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(raw, list):
        raise type_error("messages", "an array")
    if not raw:
        raise invalid("'messages' must not be empty", param="messages", code="invalid_value")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise type_error(where, "an object")
        role = message.get("role")
        if not isinstance(role, str):
            raise type_error(f"{where}.role", "a string")
        mapped = _ROLES.get(role)
        if mapped is None:
            raise invalid(
                f"invalid value for '{where}.role': supported roles are "
                "'system', 'developer', 'user', 'assistant' and 'tool'",
                param=f"{where}.role",
                code="invalid_value",
            )
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise type_error(f"{where}.name", "a string")
        tool_calls = message.get("tool_calls")
        if tool_calls is not None and mapped != "assistant":
            raise invalid(
                f"'{where}.tool_calls' is allowed only in assistant messages",
                param=f"{where}.tool_calls",
                code="invalid_value",
            )
        content = message.get("content")
        if content is None and not tool_calls:
            raise invalid(
                f"missing required parameter '{where}.content'",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
        fields = MessageFields(mapped, name or "", content, [], "")
        if tool_calls is not None:
            fields.tool_calls = _tool_calls(tool_calls, f"{where}.tool_calls")
        if mapped == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str) or not tool_call_id:
                raise invalid(
                    f"missing required parameter '{where}.tool_call_id'",
                    param=f"{where}.tool_call_id",
                    code="missing_required_parameter",
                )
            fields.tool_call_id = tool_call_id
        messages.append(fields)
    return messages


def _messages(body: dict[str, Any]) -> list[text_pb2.ChatMessage]:
    return [
        text_pb2.ChatMessage(
            role=m.role,
            content="" if m.content is None else _content(m.content, f"messages[{i}].content"),
            name=m.name,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
        )
        for i, m in enumerate(message_fields(body.get("messages")))
    ]


def parse_chat_request(raw: bytes, request_id: str) -> ChatRequest:
    """The GenerateRequest for an OpenAI chat completions body, or a 400 ApiError."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")

    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise type_error("model", "a string")
    request = text_pb2.GenerateRequest(
        model=model or "", messages=_messages(body), request_id=request_id
    )

    for name, reason in NOT_OFFERED.items():
        if body.get(name) is not None:
            raise invalid(reason, param=name, code="unsupported_parameter")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise invalid(
            "only text output is offered: send modalities ['text'] or leave it out",
            param="modalities",
            code="unsupported_parameter",
        )
    _tools_into(request, body)
    response_format = body.get("response_format")
    if response_format is not None:
        request.response_format_json = response_format_json(response_format, "response_format")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise type_error("logprobs", "a boolean")
    request.logprobs = bool(logprobs)
    top_logprobs = _integer(body, "top_logprobs", 0, _MAX_TOP_LOGPROBS)
    if top_logprobs is not None:
        if not logprobs:
            raise invalid(
                "'top_logprobs' needs 'logprobs': true", param="top_logprobs", code="invalid_value"
            )
        request.top_logprobs = top_logprobs

    n = _integer(body, "n", 1, 128)
    if n is not None and n != 1:
        raise invalid("only n=1 is supported", param="n", code="invalid_value")
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = number(body, name)
        if value is not None:
            setattr(request, name, value)
    max_tokens = _integer(body, "max_completion_tokens", 1, _INT32_MAX)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, _INT32_MAX)
    if max_tokens is not None:
        request.max_tokens = max_tokens
    seed = _integer(body, "seed", -(2**63), _INT64_MAX)
    if seed is not None:
        request.seed = seed

    stop = body.get("stop")
    if isinstance(stop, str):
        request.stop.append(stop)
    elif isinstance(stop, list):
        if len(stop) > _MAX_STOP_SEQUENCES:
            raise invalid(
                f"'stop' takes at most {_MAX_STOP_SEQUENCES} sequences",
                param="stop",
                code="invalid_value",
            )
        for i, sequence in enumerate(stop):
            if not isinstance(sequence, str):
                raise type_error(f"stop[{i}]", "a string")
        request.stop.extend(stop)
    elif stop is not None:
        raise type_error("stop", "a string or an array of strings")

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise type_error("stream", "a boolean")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        if not isinstance(options, dict):
            raise type_error("stream_options", "an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise type_error("stream_options.include_usage", "a boolean")
        include_usage = bool(usage)
    return ChatRequest(generate=request, stream=bool(stream), include_usage=include_usage)


def _tool_calls(raw: Any, where: str) -> list[text_pb2.ToolCall]:
    if not isinstance(raw, list):
        raise type_error(where, "an array")
    calls = []
    for i, call in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(call, dict):
            raise type_error(at, "an object")
        function = call.get("function")
        if not isinstance(function, dict):
            raise type_error(f"{at}.function", "an object")
        call_id, name = call.get("id"), function.get("name")
        arguments = function.get("arguments", "")
        if not isinstance(call_id, str):
            raise type_error(f"{at}.id", "a string")
        if not isinstance(name, str):
            raise type_error(f"{at}.function.name", "a string")
        if not isinstance(arguments, str):
            raise type_error(f"{at}.function.arguments", "a string")
        calls.append(text_pb2.ToolCall(id=call_id, name=name, arguments=arguments))
    return calls


def make_tool(function: Any, where: str) -> text_pb2.Tool:
    """A function tool from OpenAI's function object ({name, description?, parameters?,
    strict?}); the Responses API's flat tool has the same fields."""
    if not isinstance(function, dict):
        raise type_error(where, "an object")
    name = function.get("name")
    if not isinstance(name, str):
        raise type_error(f"{where}.name", "a string")
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise type_error(f"{where}.description", "a string")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise type_error(f"{where}.parameters", "a JSON schema object")
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise type_error(f"{where}.strict", "a boolean")
    return text_pb2.Tool(
        name=name,
        description=description,
        parameters_json=orjson.dumps(parameters).decode() if parameters else "",
        strict=bool(strict),
    )


def set_tool_choice(
    request: text_pb2.GenerateRequest,
    body: dict[str, Any],
    name_of: Callable[[dict[str, Any]], Any],
) -> None:
    """`tool_choice` and `parallel_tool_calls`, read alike by Chat Completions and Responses;
    `name_of` finds the function's name in a {"type": "function"} choice (each API nests it
    differently)."""
    choice = body.get("tool_choice")
    if choice is not None:
        named = (
            name_of(choice)
            if isinstance(choice, dict) and choice.get("type") == "function"
            else None
        )
        if isinstance(choice, str) and choice in _TOOL_CHOICES:
            request.tool_choice = choice
        elif isinstance(named, str) and named:
            request.tool_choice = "function"
            request.tool_choice_function = named
        else:
            raise invalid(
                "invalid value for 'tool_choice': use 'auto', 'none', 'required' or "
                '{"type": "function", "function": {"name": ...}}',
                param="tool_choice",
                code="invalid_value",
            )
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise type_error("parallel_tool_calls", "a boolean")
        request.parallel_tool_calls = parallel


def _chat_function_name(choice: dict[str, Any]) -> Any:
    function = choice.get("function")
    return function.get("name") if isinstance(function, dict) else None


def _tools_into(request: text_pb2.GenerateRequest, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise type_error("tools", "an array")
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise type_error(where, "an object")
            if tool.get("type") != "function":
                raise invalid(
                    f"invalid value for '{where}.type': only 'function' tools are offered",
                    param=f"{where}.type",
                    code="unsupported_parameter",
                )
            request.tools.append(make_tool(tool.get("function"), f"{where}.function"))
    set_tool_choice(request, body, _chat_function_name)


def response_format_json(response_format: Any, param: str) -> str:
    """OpenAI's response_format ({type: text | json_object | json_schema, json_schema?}) as the
    JSON text text-svc takes; an unknown type is a 400."""
    if not isinstance(response_format, dict):
        raise type_error(param, "an object")
    kind = response_format.get("type")
    if kind not in _RESPONSE_FORMATS:
        raise invalid(
            f"invalid value for '{param}.type': supported are 'text', 'json_object' and "
            "'json_schema'",
            param=f"{param}.type",
            code="invalid_value",
        )
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid(
                f"missing required parameter '{param}.json_schema'",
                param=f"{param}.json_schema",
                code="missing_required_parameter",
            )
        if not isinstance(spec.get("name"), str):
            raise type_error(f"{param}.json_schema.name", "a string")
        if not isinstance(spec.get("schema", {}), dict):
            raise type_error(f"{param}.json_schema.schema", "a JSON schema object")
    return orjson.dumps(response_format).decode()


def completion_id(generation_id: str) -> str:
    """The completion's id, from the id the model service minted for the call (its usage event
    id), never from the caller's x-request-id."""
    return f"chatcmpl-{generation_id}"


def _message(response: text_pb2.GenerateResponse) -> dict[str, Any]:
    if not response.tool_calls:
        return {"role": "assistant", "content": response.content}
    return {
        "role": "assistant",
        "content": response.content or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in response.tool_calls
        ],
    }


def completion_json(response: text_pb2.GenerateResponse) -> bytes:
    usage = response.usage
    return orjson.dumps(
        {
            "id": completion_id(response.id),
            "object": "chat.completion",
            "created": response.created or int(time.time()),
            "model": response.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(response),
                    "logprobs": (
                        orjson.Fragment(
                            b'{"content":' + response.logprobs_json.encode() + b',"refusal":null}'
                        )
                        if response.logprobs_json
                        else None
                    ),
                    "finish_reason": response.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
            "system_fingerprint": None,
        }
    )
