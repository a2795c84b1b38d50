from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BackendType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_TYPE_UNSPECIFIED: _ClassVar[BackendType]
    BACKEND_TYPE_TEXT: _ClassVar[BackendType]
    BACKEND_TYPE_MULTIMODAL: _ClassVar[BackendType]
    BACKEND_TYPE_IMAGE: _ClassVar[BackendType]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_MEMBER: _ClassVar[Mode]
    MODE_BYOK: _ClassVar[Mode]
BACKEND_TYPE_UNSPECIFIED: BackendType
BACKEND_TYPE_TEXT: BackendType
BACKEND_TYPE_MULTIMODAL: BackendType
BACKEND_TYPE_IMAGE: BackendType
MODE_UNSPECIFIED: Mode
MODE_MEMBER: Mode
MODE_BYOK: Mode

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "images", "image_size", "image_quality")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    images: int
    image_size: str
    image_quality: str
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., images: _Optional[int] = ..., image_size: _Optional[str] = ..., image_quality: _Optional[str] = ...) -> None: ...
