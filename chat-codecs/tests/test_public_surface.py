"""The library's public names are exactly the declared ones, so it cannot grow into a catch-all:
adding a name is a decision this test records."""

from __future__ import annotations

import types

import chat_codecs

EXPECTED = {
    # request and message types
    "ChatRequest",
    "Message",
    "Part",
    "TextPart",
    "ImagePart",
    "ToolCallPart",
    "ToolResultPart",
    "Tool",
    # the normalised stream and answers
    "StreamEvent",
    "Delta",
    "ToolCallDelta",
    "Finish",
    "TokenUsage",
    "Completion",
    "ModelInfo",
    # codecs
    "ChatCodec",
    "StreamDecoder",
    "OpenAIChat",
    "AnthropicMessages",
    "OllamaChat",
    "ANTHROPIC_VERSION",
    "PLACEHOLDER_KEY",
    "decode_stream",
    # a codec on a transport
    "ChatClient",
}


def test_the_library_declares_exactly_its_public_names() -> None:
    assert set(chat_codecs.__all__) == EXPECTED
    assert len(chat_codecs.__all__) == len(EXPECTED)
    assert all(hasattr(chat_codecs, name) for name in chat_codecs.__all__)


def test_nothing_else_public_at_top_level() -> None:
    public = {
        name
        for name, value in vars(chat_codecs).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == EXPECTED


def test_it_imports_no_model_service() -> None:
    import sys

    assert not any(m.split(".")[0].endswith("_svc") for m in sys.modules if "chat_codecs" in m)
