"""Chat codecs shared by the chat model services (see README.md): the provider-neutral request
and message types, one codec per wire protocol, the normalised stream, and a client that puts a
codec on an endpoint's transport."""

from chat_codecs.anthropic_messages import ANTHROPIC_VERSION, AnthropicMessages
from chat_codecs.client import ChatClient
from chat_codecs.codec import ChatCodec, StreamDecoder, decode_stream
from chat_codecs.ollama_chat import OllamaChat
from chat_codecs.openai_chat import PLACEHOLDER_KEY, OpenAIChat
from chat_codecs.types import (
    ChatRequest,
    Completion,
    Delta,
    Finish,
    ImagePart,
    Message,
    ModelInfo,
    Part,
    StreamEvent,
    TextPart,
    TokenUsage,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "PLACEHOLDER_KEY",
    "AnthropicMessages",
    "ChatClient",
    "ChatCodec",
    "ChatRequest",
    "Completion",
    "Delta",
    "Finish",
    "ImagePart",
    "Message",
    "ModelInfo",
    "OllamaChat",
    "OpenAIChat",
    "Part",
    "StreamDecoder",
    "StreamEvent",
    "TextPart",
    "TokenUsage",
    "Tool",
    "ToolCallDelta",
    "ToolCallPart",
    "ToolResultPart",
    "decode_stream",
]
