"""What a real model does with tools and structured output, deterministically: it calls a tool
when tools are offered (honouring the tool choice) with arguments that validate against the
tool's JSON schema, answers JSON that validates against a response schema, gives logprobs when
asked, and answers in text once a tool's result is in the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def schema_instance(schema: Any, root: Any = None) -> Any:
    """A minimal instance that validates against a JSON schema: required properties only, the
    first enum value or const, the first branch of anyOf/oneOf, `$ref`s into `$defs`, the least
    number, string or array the bounds allow. Deterministic, so tests can predict it.

    >>> schema_instance({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}},
    ...                  "required": ["n"]})
    {'n': 3}
    """
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        target: Any = root
        for key in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return schema_instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0], root)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            branch = schema_instance(part, root)
            if isinstance(branch, dict):
                merged.update(branch)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: schema_instance(properties.get(name, {}), root)
            for name in schema.get("required") or ()
        }
    if kind == "array":
        return [schema_instance(schema.get("items", {}), root)] * int(schema.get("minItems", 0))
    if kind == "string":
        text = _FORMATS.get(str(schema.get("format")), "x")
        return text.ljust(int(schema.get("minLength", 0)), "x")
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            value = schema["exclusiveMinimum"] + 1
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None


def json_pieces(value: Any, size: int = 6) -> tuple[str, ...]:
    """A JSON value's text in stream pieces of `size` characters (each piece counts as a token),
    as a model streams tool-call arguments or a structured answer."""
    text = orjson.dumps(value).decode()
    return tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)


def token_logprobs(pieces: Sequence[str], top: int) -> list[dict[str, Any]]:
    """OpenAI's logprobs.content entries for `pieces`, one token each, with `top` alternatives."""
    entries = []
    for piece in pieces:
        alternatives = [
            {"token": token, "logprob": -0.25 * (rank + 1), "bytes": list(token.encode())}
            for rank, token in enumerate([piece, *(f" alt{i}" for i in range(1, top))][:top])
        ]
        entries.append(
            {
                "token": piece,
                "logprob": -0.25,
                "bytes": list(piece.encode()),
                "top_logprobs": alternatives,
            }
        )
    return entries


class ToolCall:
    """The call a stand-in makes: the tool's name and arguments (a minimal valid instance)."""

    __slots__ = ("arguments", "name", "pieces")

    def __init__(self, name: str, schema: Any) -> None:
        self.name = name
        self.arguments = schema_instance(schema)
        self.pieces = json_pieces(self.arguments)


def call_for(tools: Sequence[tuple[str, Any]], forced: str | None) -> ToolCall | None:
    """The tool to call among (name, schema) pairs: the forced one, else the first."""
    for name, schema in tools:
        if forced is None or name == forced:
            return ToolCall(name, schema)
    return None


def openai_tool_call(body: dict[str, Any]) -> ToolCall | None:
    """OpenAI's (and Ollama's) request shape: tools offered, and no tool result answered yet."""
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    if not tools or (messages and _role(messages[-1]) == "tool"):
        return None
    choice = body.get("tool_choice", "auto")
    if choice == "none":
        return None
    forced = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    pairs = [
        (str(t["function"]["name"]), t["function"].get("parameters") or {})
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    return call_for(pairs, forced)


def anthropic_tool_call(body: dict[str, Any]) -> ToolCall | None:
    """Anthropic's request shape: tools with input_schema, tool_choice auto | any | tool | none."""
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    if not tools or (messages and tool_result_text(messages[-1]) is not None):
        return None
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice.get("type") == "none":
        return None
    forced = choice.get("name") if choice.get("type") == "tool" else None
    pairs = [(str(t["name"]), t.get("input_schema") or {}) for t in tools if isinstance(t, dict)]
    return call_for(pairs, forced)


def tool_result_text(message: Any) -> str | None:
    """The text of the tool results a message carries (OpenAI's `tool` message, Anthropic's
    `tool_result` blocks), or None if it carries none: the model's answer then uses them."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if message.get("role") == "tool":
        return _text(content)
    if isinstance(content, list):
        results = [
            _text(b.get("content"))
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]
        if results:
            return " ".join(results)
    return None


def json_answer(response_format: Any, prompt: str) -> Any | None:
    """The JSON answer to an OpenAI response_format (or Ollama's `format`), None for text."""
    if response_format == "json":
        return {"echo": prompt}
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"echo": prompt}
    if kind == "json_schema":
        return schema_instance((response_format.get("json_schema") or {}).get("schema") or {})
    if "type" in response_format or "properties" in response_format:
        return schema_instance(response_format)  # Ollama's format: the schema itself
    return None


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b
        )
    return ""
