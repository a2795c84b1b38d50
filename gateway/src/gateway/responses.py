"""OpenAI's Responses API, stateless: a `POST /v1/responses` body becomes the same GenerateRequest
a chat completion does (so every text provider serves it through the same codecs), and the answer
goes back as a `response` object or the Responses event stream the official SDKs parse.

Nothing is stored: `previous_response_id`, `store: true`, `background`, conversations, prompts
and built-in tools are refused with a 400 that says they are not offered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.chat import make_tool, number, response_format_json, set_tool_choice, type_error
from gateway.errors import ApiError, invalid
from gateway.metrics import Metrics
from gateway.streaming import (
    CREDITS_HEADER,
    STREAM_HEADERS,
    CallCancelled,
    DisconnectWatcher,
    EventStreamResponse,
    ModelStream,
)
from grpc_stubs.text.v1 import text_pb2

_INT32_MAX = 2**31 - 1
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text")
# Stateful or hosted features: refused, never dropped (store: false and metadata are harmless).
_NOT_OFFERED = {
    "previous_response_id": "previous_response_id is not offered: responses are not stored; "
    "send the whole conversation in 'input'",
    "conversation": "conversations are not offered: responses are not stored; send the whole "
    "conversation in 'input'",
    "background": "background responses are not offered",
    "prompt": "stored prompts are not offered",
    "reasoning": "reasoning options are not offered",
}


@dataclass(slots=True)
class ResponsesRequest:
    generate: text_pb2.GenerateRequest
    stream: bool
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the response repeats


def _not_offered(message: str, param: str) -> ApiError:
    return invalid(message, param=param, code="unsupported_parameter")


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise type_error(where, "a string or an array of content parts")
    texts = []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            raise type_error(at, "an object")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            if not isinstance(part.get("text"), str):
                raise type_error(f"{at}.text", "a string")
            texts.append(part["text"])
        elif kind in ("input_image", "input_file", "input_audio"):
            raise invalid(
                "the text proxy does not accept images or files: send image content to "
                "/api/multimodal-proxy/v1/chat/completions",
                param=f"{at}.type",
                code="invalid_value",
            )
        else:
            raise invalid(
                f"invalid value for '{at}.type': the text proxy accepts 'input_text' and "
                "'output_text' parts",
                param=f"{at}.type",
                code="invalid_value",
            )
    return "\n".join(texts)


def _input(raw: Any) -> list[text_pb2.ChatMessage]:
    if isinstance(raw, str):
        return [text_pb2.ChatMessage(role="user", content=raw)]
    if not isinstance(raw, list):
        raise type_error("input", "a string or an array of input items")
    messages: list[text_pb2.ChatMessage] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise type_error(where, "an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                raise invalid(
                    f"invalid value for '{where}.role': use 'user', 'assistant', 'system' or "
                    "'developer'",
                    param=f"{where}.role",
                    code="invalid_value",
                )
            content = _text_of(item.get("content"), f"{where}.content")
            messages.append(text_pb2.ChatMessage(role=role, content=content))
        elif kind == "function_call":
            call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
            if not (
                isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)
            ):
                raise type_error(where, "a function_call with call_id, name and arguments")
            call = text_pb2.ToolCall(id=call_id, name=name, arguments=arguments)
            last = messages[-1] if messages else None
            if last is not None and last.role == "assistant" and last.tool_calls:
                last.tool_calls.append(call)  # parallel calls are one assistant turn
            else:
                messages.append(text_pb2.ChatMessage(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                raise type_error(f"{where}.call_id", "a string")
            output = _text_of(item.get("output"), f"{where}.output")
            messages.append(text_pb2.ChatMessage(role="tool", content=output, tool_call_id=call_id))
        else:
            raise _not_offered(
                f"input items of type {str(kind)[:40]!r} are not offered: send messages, "
                "function_call and function_call_output items",
                f"{where}.type",
            )
    if not messages:
        raise invalid("'input' must not be empty", param="input", code="invalid_value")
    return messages


def _tools(request: text_pb2.GenerateRequest, body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise type_error("tools", "an array")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise type_error(f"tools[{i}]", "an object")
            if tool.get("type") != "function":
                raise _not_offered(
                    f"built-in tools such as {str(tool.get('type'))[:40]!r} are not offered: "
                    "only 'function' tools are",
                    f"tools[{i}].type",
                )
            request.tools.append(make_tool(tool, f"tools[{i}]"))
    # Responses names the function at the top of the choice: {"type": "function", "name": ...}.
    set_tool_choice(request, body, lambda choice: choice.get("name"))


def _text_format(request: text_pb2.GenerateRequest, body: dict[str, Any]) -> None:
    text = body.get("text")
    if text is None:
        return
    if not isinstance(text, dict):
        raise type_error("text", "an object")
    fmt = text.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise type_error("text.format", "an object")
    if fmt.get("type") == "json_schema":
        # The Responses API's flat format, in chat completions' nested shape.
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        fmt = {"type": "json_schema", "json_schema": spec}
    request.response_format_json = response_format_json(fmt, "text.format")


def parse_responses_request(raw: bytes, request_id: str) -> ResponsesRequest:
    """The GenerateRequest for a Responses API body, or a 400 ApiError."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    for name, reason in _NOT_OFFERED.items():
        if body.get(name) not in (None, False):
            raise _not_offered(reason, name)
    if body.get("store") is True:
        raise _not_offered(
            "store: true is not offered: responses are not stored (send store: false or leave "
            "it out)",
            "store",
        )
    if body.get("include"):
        raise _not_offered("'include' is not offered", "include")
    if body.get("truncation") not in (None, "disabled"):
        raise _not_offered("truncation 'auto' is not offered", "truncation")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise type_error("model", "a string")
    if "input" not in body:
        raise invalid(
            "missing required parameter 'input'",
            param="input",
            code="missing_required_parameter",
        )
    messages = _input(body["input"])
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise type_error("instructions", "a string")
        messages.insert(0, text_pb2.ChatMessage(role="system", content=instructions))
    request = text_pb2.GenerateRequest(model=model or "", messages=messages, request_id=request_id)
    for name in ("temperature", "top_p"):
        value = number(body, name)
        if value is not None:
            setattr(request, name, value)
    max_output_tokens = body.get("max_output_tokens")
    if max_output_tokens is not None:
        if isinstance(max_output_tokens, bool) or not isinstance(max_output_tokens, int):
            raise type_error("max_output_tokens", "an integer")
        if not 1 <= max_output_tokens <= _INT32_MAX:
            raise invalid(
                "invalid value for 'max_output_tokens': must be at least 1",
                param="max_output_tokens",
                code="invalid_value",
            )
        request.max_tokens = max_output_tokens
    _tools(request, body)
    _text_format(request, body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise type_error("stream", "a boolean")
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
    }
    return ResponsesRequest(request, bool(stream), echo)


def _usage(usage: Any) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _response(
    response_id: str,
    created: int,
    model: str,
    echo: dict[str, Any],
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str = "",
) -> dict[str, Any]:
    incomplete = status == "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": (
            {
                "reason": "content_filter"
                if finish_reason == "content_filter"
                else "max_output_tokens"
            }
            if incomplete
            else None
        ),
        "model": model,
        "output": output,
        "previous_response_id": None,
        "store": False,
        "metadata": {},
        "usage": usage,
        **echo,
    }


def _status(finish_reason: str) -> str:
    return "incomplete" if finish_reason in ("length", "content_filter") else "completed"


def response_json(answer: text_pb2.GenerateResponse, echo: dict[str, Any]) -> bytes:
    output: list[dict[str, Any]] = []
    if answer.content or not answer.tool_calls:
        output.append(_message_item(f"msg_{answer.id}", answer.content, "completed"))
    for i, call in enumerate(answer.tool_calls):
        output.append(
            _call_item(f"fc_{answer.id}_{i}", call.id, call.name, call.arguments, "completed")
        )
    body = _response(
        f"resp_{answer.id}",
        answer.created or int(time.time()),
        answer.model,
        echo,
        _status(answer.finish_reason),
        output,
        _usage(answer.usage),
        answer.finish_reason,
    )
    return orjson.dumps(body)


class _Events:
    """The Responses event stream of one answer: each event named (`event:`) and numbered
    (`sequence_number`), as the official SDKs read them."""

    def __init__(self, response_id: str, created: int, model: str, echo: dict[str, Any]) -> None:
        self.response_id = response_id
        self.created = created
        self.model = model
        self.echo = echo
        self.sequence = 0
        self.output: list[dict[str, Any]] = []

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def response(
        self, status: str, usage: dict[str, Any] | None = None, finish_reason: str = ""
    ) -> dict[str, Any]:
        return _response(
            self.response_id,
            self.created,
            self.model,
            self.echo,
            status,
            list(self.output),
            usage,
            finish_reason,
        )


async def responses_events(
    stream: ModelStream,
    events: _Events,
    pending: text_pb2.GenerateStreamResponse | None,
    metrics: Metrics,
) -> AsyncIterator[bytes]:
    metrics.streams.inc()
    message_id = f"msg_{events.response_id.removeprefix('resp_')}"
    text: list[str] = []
    text_open = False
    calls: dict[int, dict[str, Any]] = {}  # tool call index -> its item (arguments so far)
    positions: dict[int, int] = {}  # tool call index -> output_index
    try:
        yield events.event("response.created", response=events.response("in_progress"))
        yield events.event("response.in_progress", response=events.response("in_progress"))
        message = pending or await stream.read()
        while message is not None:
            kind = message.WhichOneof("event")
            if kind == "delta":
                delta = message.delta
                if delta.content:
                    if not text_open:
                        text_open = True
                        positions[-1] = len(positions)
                        item = _message_item(message_id, "", "in_progress")
                        item["content"] = []
                        yield events.event(
                            "response.output_item.added", output_index=positions[-1], item=item
                        )
                        yield events.event(
                            "response.content_part.added",
                            item_id=message_id,
                            output_index=positions[-1],
                            content_index=0,
                            part={
                                "type": "output_text",
                                "text": "",
                                "annotations": [],
                                "logprobs": [],
                            },
                        )
                    text.append(delta.content)
                    yield events.event(
                        "response.output_text.delta",
                        item_id=message_id,
                        output_index=positions[-1],
                        content_index=0,
                        delta=delta.content,
                        logprobs=[],
                    )
                for piece in delta.tool_calls:
                    if piece.index not in calls:
                        index = positions[piece.index] = len(positions)
                        item_id = f"fc_{events.response_id.removeprefix('resp_')}_{piece.index}"
                        calls[piece.index] = _call_item(
                            item_id, piece.id, piece.name, "", "in_progress"
                        )
                        yield events.event(
                            "response.output_item.added",
                            output_index=index,
                            item=calls[piece.index],
                        )
                    call = calls[piece.index]
                    if piece.arguments:
                        call["arguments"] += piece.arguments
                        yield events.event(
                            "response.function_call_arguments.delta",
                            item_id=call["id"],
                            output_index=positions[piece.index],
                            delta=piece.arguments,
                        )
            elif kind == "finish":
                finish = message.finish
                for event in _close_items(
                    events, message_id, text_open, "".join(text), calls, positions
                ):
                    yield event
                status = _status(finish.finish_reason)
                yield events.event(
                    f"response.{status}",
                    response=events.response(status, _usage(finish.usage), finish.finish_reason),
                )
                await _drain(stream)
                return
            message = await stream.read()
        yield _error(
            events,
            ApiError(502, "the model's stream ended before it finished", code="upstream_error"),
        )
    except ApiError as err:
        yield _error(events, err)
    except CallCancelled:
        return
    finally:
        stream.cancel()
        metrics.streams.dec()


def _close_items(
    events: _Events,
    message_id: str,
    text_open: bool,
    text: str,
    calls: dict[int, dict[str, Any]],
    positions: dict[int, int],
) -> list[bytes]:
    """The .done events of every open output item, in output order."""
    out = []
    for key, index in sorted(positions.items(), key=lambda kv: kv[1]):
        if key == -1 and text_open:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(
                events.event(
                    "response.output_text.done",
                    item_id=message_id,
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                events.event(
                    "response.content_part.done",
                    item_id=message_id,
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
            item = _message_item(message_id, text, "completed")
        else:
            item = dict(calls[key], status="completed")
            out.append(
                events.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        events.output.append(item)
        out.append(events.event("response.output_item.done", output_index=index, item=item))
    return out


def _error(events: _Events, err: ApiError) -> bytes:
    # The SDKs raise on an event whose data has an `error`; code/message/param as OpenAI's.
    body = err.body()["error"]
    return events.event(
        "error",
        code=body.get("code"),
        message=body.get("message"),
        param=body.get("param"),
        error=body,
    )


async def _drain(stream: ModelStream) -> None:
    try:
        while await stream.read() is not None:
            pass
    except ApiError:
        pass


async def start_responses_stream(
    request: Request, stream: ModelStream, parsed: ResponsesRequest
) -> Response:
    metrics: Metrics = request.app.state.metrics
    watcher = DisconnectWatcher(request.receive, stream.cancel)
    try:
        first = await stream.read()
    except BaseException as err:
        watcher.stop()
        stream.cancel()
        if isinstance(err, CallCancelled):
            return Response(status_code=499)
        raise
    headers = dict(STREAM_HEADERS)
    model = parsed.generate.model
    if first is not None and first.WhichOneof("event") == "start":
        start = first.start
        events = _Events(
            f"resp_{start.id}", start.created or int(time.time()), start.model or model, parsed.echo
        )
        if start.balance_micros >= 0:
            headers[CREDITS_HEADER] = str(start.balance_micros)
        pending = None
    else:
        events = _Events(f"resp_{uuid.uuid4().hex}", int(time.time()), model, parsed.echo)
        pending = first
    return EventStreamResponse(responses_events(stream, events, pending, metrics), watcher, headers)
