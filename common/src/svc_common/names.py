"""The product's names for backend types and modes, and the proto enum value of each.

One table for every service: the JSON API, settings rows, usage events and billing rows spell
them as here; the gRPC messages carry the enums.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from grpc_stubs.common.v1 import common_pb2

__all__ = [
    "BACKEND_TYPES",
    "BACKEND_TYPE_ENUMS",
    "BACKEND_TYPE_NAMES",
    "MODES",
    "MODE_ENUMS",
    "MODE_NAMES",
    "BackendTypeEnum",
    "ModeEnum",
    "api_style_for",
]

BackendTypeEnum = common_pb2.BackendType.ValueType
ModeEnum = common_pb2.Mode.ValueType

# In the order the product lists them (presets are sorted by it).
BACKEND_TYPES: Final = ("text", "multimodal", "image")
MODES: Final = ("member", "byok")

# Read-only: every service shares these objects, so no caller can change another's table.
BACKEND_TYPE_ENUMS: Final = MappingProxyType(
    {
        "text": common_pb2.BACKEND_TYPE_TEXT,
        "multimodal": common_pb2.BACKEND_TYPE_MULTIMODAL,
        "image": common_pb2.BACKEND_TYPE_IMAGE,
    }
)
BACKEND_TYPE_NAMES: Final = MappingProxyType(
    {value: name for name, value in BACKEND_TYPE_ENUMS.items()}
)
MODE_ENUMS: Final = MappingProxyType(
    {"member": common_pb2.MODE_MEMBER, "byok": common_pb2.MODE_BYOK}
)
MODE_NAMES: Final = MappingProxyType({value: name for name, value in MODE_ENUMS.items()})

# The wire protocol of each chat provider that has its own; every other provider name is an
# OpenAI-compatible server (LM Studio, vLLM, a generic one).
_CHAT_API_STYLES: Final = MappingProxyType(
    {"openai": "openai", "anthropic": "anthropic", "ollama": "ollama"}
)


def api_style_for(provider: str) -> str:
    """The wire protocol of a chat provider named without one: anything unknown speaks OpenAI's."""
    return _CHAT_API_STYLES.get(provider, "openai_compatible")
