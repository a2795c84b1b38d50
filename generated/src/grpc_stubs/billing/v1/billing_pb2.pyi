from grpc_stubs.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveRequest(_message.Message):
    __slots__ = ("request_id", "backend_type", "provider", "model", "worst_case", "alternatives")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORST_CASE_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    backend_type: _common_pb2.BackendType
    provider: str
    model: str
    worst_case: _common_pb2.Usage
    alternatives: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, request_id: _Optional[str] = ..., backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., worst_case: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., alternatives: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("provider", "model")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("hold_id", "amount_micros", "balance_micros", "expires_at")
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    amount_micros: int
    balance_micros: int
    expires_at: int
    def __init__(self, hold_id: _Optional[str] = ..., amount_micros: _Optional[int] = ..., balance_micros: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("hold_id",)
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    hold_id: str
    def __init__(self, hold_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("balance_micros",)
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    balance_micros: int
    def __init__(self, balance_micros: _Optional[int] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Balance(_message.Message):
    __slots__ = ("balance_micros", "held_micros")
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    HELD_MICROS_FIELD_NUMBER: _ClassVar[int]
    balance_micros: int
    held_micros: int
    def __init__(self, balance_micros: _Optional[int] = ..., held_micros: _Optional[int] = ...) -> None: ...

class ListUsageRequest(_message.Message):
    __slots__ = ("backend_type", "from_unix", "to_unix")
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    FROM_UNIX_FIELD_NUMBER: _ClassVar[int]
    TO_UNIX_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    from_unix: int
    to_unix: int
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., from_unix: _Optional[int] = ..., to_unix: _Optional[int] = ...) -> None: ...

class UsageTotal(_message.Message):
    __slots__ = ("backend_type", "provider", "model", "mode", "requests", "input_tokens", "output_tokens", "images", "cost_micros")
    BACKEND_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    backend_type: _common_pb2.BackendType
    provider: str
    model: str
    mode: _common_pb2.Mode
    requests: int
    input_tokens: int
    output_tokens: int
    images: int
    cost_micros: int
    def __init__(self, backend_type: _Optional[_Union[_common_pb2.BackendType, str]] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., mode: _Optional[_Union[_common_pb2.Mode, str]] = ..., requests: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., images: _Optional[int] = ..., cost_micros: _Optional[int] = ...) -> None: ...

class ListUsageResponse(_message.Message):
    __slots__ = ("totals",)
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    totals: _containers.RepeatedCompositeFieldContainer[UsageTotal]
    def __init__(self, totals: _Optional[_Iterable[_Union[UsageTotal, _Mapping]]] = ...) -> None: ...

class GrantRequest(_message.Message):
    __slots__ = ("user_id", "amount_micros", "grant_id", "reason")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    amount_micros: int
    grant_id: str
    reason: str
    def __init__(self, user_id: _Optional[str] = ..., amount_micros: _Optional[int] = ..., grant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GrantResponse(_message.Message):
    __slots__ = ("balance_micros",)
    BALANCE_MICROS_FIELD_NUMBER: _ClassVar[int]
    balance_micros: int
    def __init__(self, balance_micros: _Optional[int] = ...) -> None: ...
