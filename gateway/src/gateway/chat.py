"""OpenAI chat completions <-> text.v1: the request body to a GenerateRequest, the answer back
to OpenAI's exact `chat.completion` shape (streams, `chat.completion.chunk`: gateway.streaming).

Validated by hand on the orjson-parsed body: it is the hot path, and the messages say exactly
which field is wrong, as OpenAI's do. Unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import ApiError, invalid
from grpc_stubs.text.v1 import text_pb2

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_MAX_STOP_SEQUENCES = 4


@dataclass(slots=True)
class ChatRequest:
    generate: text_pb2.GenerateRequest
    stream: bool
    include_usage: bool


def _type_error(param: str, expected: str) -> ApiError:
    return invalid(
        f"invalid type for '{param}': expected {expected}", param=param, code="invalid_type"
    )


def _number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(name, "a number")
    return float(value)


def _integer(body: dict[str, Any], name: str, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer")
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
        raise _type_error(param, "a string or an array of content parts")
    texts: list[str] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise _type_error(where, "an object")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _type_error(f"{where}.text", "a string")
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


def _messages(body: dict[str, Any]) -> list[text_pb2.ChatMessage]:
    raw = body.get("messages")
    if raw is None:
        raise invalid(
            "missing required parameter 'messages'",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(raw, list):
        raise _type_error("messages", "an array")
    if not raw:
        raise invalid("'messages' must not be empty", param="messages", code="invalid_value")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _type_error(where, "an object")
        role = message.get("role")
        if not isinstance(role, str):
            raise _type_error(f"{where}.role", "a string")
        mapped = _ROLES.get(role)
        if mapped is None:
            raise invalid(
                f"invalid value for '{where}.role': supported roles are "
                "'system', 'developer', 'user' and 'assistant'",
                param=f"{where}.role",
                code="invalid_value",
            )
        if "content" not in message or message["content"] is None:
            raise invalid(
                f"missing required parameter '{where}.content'",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise _type_error(f"{where}.name", "a string")
        messages.append(
            text_pb2.ChatMessage(
                role=mapped,
                content=_content(message["content"], f"{where}.content"),
                name=name or "",
            )
        )
    return messages


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
        raise _type_error("model", "a string")
    request = text_pb2.GenerateRequest(
        model=model or "", messages=_messages(body), request_id=request_id
    )

    n = _integer(body, "n", 1, 128)
    if n is not None and n != 1:
        raise invalid("only n=1 is supported", param="n", code="invalid_value")
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = _number(body, name)
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
                raise _type_error(f"stop[{i}]", "a string")
        request.stop.extend(stop)
    elif stop is not None:
        raise _type_error("stop", "a string or an array of strings")

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _type_error("stream", "a boolean")
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
            raise _type_error("stream_options", "an object")
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _type_error("stream_options.include_usage", "a boolean")
        include_usage = bool(usage)
    return ChatRequest(generate=request, stream=bool(stream), include_usage=include_usage)


def completion_id(generation_id: str) -> str:
    """The completion's id, from the id the model service minted for the call (its usage event
    id), never from the caller's x-request-id."""
    return f"chatcmpl-{generation_id}"


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
                    "message": {"role": "assistant", "content": response.content},
                    "logprobs": None,
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
