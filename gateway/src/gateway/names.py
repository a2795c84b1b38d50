"""The product's names for the proto enums: backend types and modes, as the JSON API spells them."""

from __future__ import annotations

from grpc_stubs.common.v1 import common_pb2

BACKEND_TYPES: dict[str, common_pb2.BackendType.ValueType] = {
    "text": common_pb2.BACKEND_TYPE_TEXT,
    "multimodal": common_pb2.BACKEND_TYPE_MULTIMODAL,
    "image": common_pb2.BACKEND_TYPE_IMAGE,
}
BACKEND_TYPE_NAMES = {value: name for name, value in BACKEND_TYPES.items()}

MODES: dict[str, common_pb2.Mode.ValueType] = {
    "member": common_pb2.MODE_MEMBER,
    "byok": common_pb2.MODE_BYOK,
}
MODE_NAMES = {value: name for name, value in MODES.items()}
