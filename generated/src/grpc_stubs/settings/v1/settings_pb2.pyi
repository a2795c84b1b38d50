from grpc_stubs.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiKeyInfo(_message.Message):
    __slots__ = ("is_set", "hint", "fingerprint", "provider")
    IS_SET_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    is_set: bool
    hint: str
    fingerprint: str
    provider: str
    def __init__(self, is_set: _Optional[bool] = ..., hint: _Optional[str] = ..., fingerprint: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class BackendConfig(_message.Message):
    __slots__ = ("backend_type", "provider", "model", "temperature", "mode", "options", "base_url", "version", "api_key", "updated_at")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    provider: str
    model: str
    temperature: float
    mode: _common_pb2.Mode
    options: _containers.ScalarMap[str, str]
    base_url: str
    version: int
    api_key: ApiKeyInfo
    updated_at: int
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., temperature: _Optional[float] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., options: _Optional[_Mapping[str, str]] = ..., base_url: _Optional[str] = ..., version: _Optional[int] = ..., api_key: _Optional[_Union[ApiKeyInfo, _Mapping]] = ..., updated_at: _Optional[int] = ...) -> None: ...

class GetConfigsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigsResponse(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[BackendConfig]
    def __init__(self, configs: _Optional[_Iterable[_Union[BackendConfig, _Mapping]]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("backend_type",)
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ...) -> None: ...

class PutConfigRequest(_message.Message):
    __slots__ = ("config", "expected_version")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    config: BackendConfig
    expected_version: int
    def __init__(self, config: _Optional[_Union[BackendConfig, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteConfigRequest(_message.Message):
    __slots__ = ("backend_type",)
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ...) -> None: ...

class DeleteConfigResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetApiKeyRequest(_message.Message):
    __slots__ = ("backend_type", "api_key", "provider")
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    api_key: str
    provider: str
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., api_key: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class DeleteApiKeyRequest(_message.Message):
    __slots__ = ("backend_type",)
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ...) -> None: ...

class DeleteApiKeyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPresetsRequest(_message.Message):
    __slots__ = ("backend_type",)
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ...) -> None: ...

class Preset(_message.Message):
    __slots__ = ("provider", "backend_type", "display_name", "api_style", "models", "default_model", "temperature_min", "temperature_max", "default_temperature", "member_allowed", "user_base_url_allowed", "default_base_url")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    API_STYLE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MIN_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MAX_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    USER_BASE_URL_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    backend_type: _common_pb2.BackendType
    display_name: str
    api_style: str
    models: _containers.RepeatedScalarFieldContainer[str]
    default_model: str
    temperature_min: float
    temperature_max: float
    default_temperature: float
    member_allowed: bool
    user_base_url_allowed: bool
    default_base_url: str
    def __init__(self, provider: _Optional[str] = ..., backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., display_name: _Optional[str] = ..., api_style: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., default_model: _Optional[str] = ..., temperature_min: _Optional[float] = ..., temperature_max: _Optional[float] = ..., default_temperature: _Optional[float] = ..., member_allowed: _Optional[bool] = ..., user_base_url_allowed: _Optional[bool] = ..., default_base_url: _Optional[str] = ...) -> None: ...

class ListPresetsResponse(_message.Message):
    __slots__ = ("presets",)
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    presets: _containers.RepeatedCompositeFieldContainer[Preset]
    def __init__(self, presets: _Optional[_Iterable[_Union[Preset, _Mapping]]] = ...) -> None: ...

class ResolveConfigRequest(_message.Message):
    __slots__ = ("backend_type",)
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ...) -> None: ...

class ResolvedConfig(_message.Message):
    __slots__ = ("backend_type", "provider", "api_style", "model", "temperature", "mode", "options", "base_url", "api_key", "platform_key_ref", "config_version", "models", "temperature_min", "temperature_max")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    API_STYLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_KEY_REF_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MIN_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_MAX_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    provider: str
    api_style: str
    model: str
    temperature: float
    mode: _common_pb2.Mode
    options: _containers.ScalarMap[str, str]
    base_url: str
    api_key: str
    platform_key_ref: str
    config_version: int
    models: _containers.RepeatedScalarFieldContainer[str]
    temperature_min: float
    temperature_max: float
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., provider: _Optional[str] = ..., api_style: _Optional[str] = ..., model: _Optional[str] = ..., temperature: _Optional[float] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., options: _Optional[_Mapping[str, str]] = ..., base_url: _Optional[str] = ..., api_key: _Optional[str] = ..., platform_key_ref: _Optional[str] = ..., config_version: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., temperature_min: _Optional[float] = ..., temperature_max: _Optional[float] = ...) -> None: ...
