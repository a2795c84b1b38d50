"""The HTTP API's JSON shapes as pydantic models.

Settings bodies are validated with these. The chat completion body is validated by hand
(gateway.chat: the hot path) and these models only describe it in OpenAPI; responses are
rendered with orjson and described here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
)

BackendTypeName = Literal["text", "multimodal", "image"]
ModeName = Literal["member", "byok"]

# Versions are int64 in the services' contracts.
INT64_MAX = 2**63 - 1
# What settings-svc stores as a key (svc settings_svc.keystore): printable ASCII, no spaces.
MAX_API_KEY_CHARS = 4096
API_KEY_PATTERN = "^[!-~]+$"
_API_KEY = re.compile(API_KEY_PATTERN)


def _unicode_text(value: str) -> str:
    # JSON may escape a lone surrogate ("\ud800"); such a string cannot be encoded to UTF-8,
    # so no service could store or even receive it.
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(
                "must be valid Unicode text: remove the lone surrogate (such as \\ud800)"
            ) from None
    return value


# Every string of a settings body: plain str, without lone surrogates.
Text = Annotated[str, AfterValidator(_unicode_text)]


def _clean_api_key(value: Any) -> Any:
    """The key as settings-svc will store it: surrounding whitespace removed, then printable
    ASCII only. Checked here too, so the gateway refuses what the service would."""
    if not isinstance(value, str):
        return value  # the SecretStr type check says what is wrong
    key = value.strip()
    if not key:
        raise ValueError("api_key is empty: send the key, or DELETE the api-key route to remove it")
    if not _API_KEY.match(key):
        # Never the key itself in the message: only what to change.
        raise ValueError(
            "api_key may contain only printable ASCII characters, without spaces or control "
            "characters"
        )
    return key


ApiKey = Annotated[
    SecretStr,
    BeforeValidator(_clean_api_key),
    Field(
        min_length=1,
        max_length=MAX_API_KEY_CHARS,
        description="Write-only. Printable ASCII without spaces; surrounding whitespace is removed",
        json_schema_extra={"pattern": API_KEY_PATTERN},
    ),
]


# ---- chat completions (OpenAPI description only) ----


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion body. Unknown fields are ignored; images go to multimodal."""

    # stream_options is refused unless stream is true (as OpenAI does): said in the schema too.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "required": ["stream_options"],
                "properties": {"stream_options": {"type": "object"}},
            },
            "then": {"required": ["stream"], "properties": {"stream": {"const": True}}},
        }
    )

    model: str | None = Field(None, description="Empty: the model of your text config")
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    n: Literal[1] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = Field(None, description="Only with stream: true")


class ImageUrl(BaseModel):
    url: str = Field(
        min_length=1,
        description="A data: URL (data:image/png;base64,...) or, where the operator allows it, "
        "an https URL the platform fetches; PNG, JPEG, WEBP or GIF",
    )
    detail: Literal["auto", "low", "high"] | None = Field(
        None, description="How closely the model looks (and what the image costs); empty: auto"
    )


class ImageUrlPart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl | str = Field(description="The image (a plain URL string is taken too)")


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON text")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class FunctionDefinition(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON schema object")
    strict: bool | None = None


class Tool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = Field(
        None, description="With type json_schema: {name, schema, strict?}"
    )


class MultimodalChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]] | None = (
        Field(None, description="Required except beside an assistant's tool_calls")
    )
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, description="Assistant messages only")
    tool_call_id: str | None = Field(None, description="Required in tool messages")


class MultimodalChatCompletionRequest(ChatCompletionRequest):
    """OpenAI's chat completion body with image_url content parts, tools and structured output."""

    messages: list[MultimodalChatMessage] = Field(min_length=1)  # type: ignore[assignment]
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Only with logprobs: true")


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = Field(description="null when the model calls tools instead")
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: dict[str, Any] | None = Field(None, description="With logprobs: true")


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: None = None


# ---- the Responses API's response object (the stateless subset the gateway answers) ----


class OutputText(BaseModel):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    id: str
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = Field(description="The arguments as a JSON text")
    status: Literal["in_progress", "completed", "incomplete"]


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens: int
    output_tokens_details: dict[str, int]
    total_tokens: int


class ResponseObject(BaseModel):
    """A response as OpenAI's Responses API shapes it; the request's settings are echoed too."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: dict[str, Any] | None
    incomplete_details: dict[str, str] | None
    model: str
    output: list[Annotated[OutputMessage | OutputFunctionCall, Field(discriminator="type")]]
    previous_response_id: None = None
    store: Literal[False]
    usage: ResponseUsage | None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ProviderStatus(BaseModel):
    ok: bool
    provider: str
    model: str
    detail: str = Field(description="What failed, in words you can act on")
    latency_ms: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None
    param: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# ---- settings ----


class ApiKeyInfo(BaseModel):
    is_set: bool
    hint: str = Field(description="The key's last four characters; the key itself is never shown")
    fingerprint: str
    provider: str


class BackendConfig(BaseModel):
    backend_type: BackendTypeName
    provider: str
    model: str
    temperature: float | None
    mode: ModeName | None
    options: dict[str, str]
    base_url: str
    version: int = Field(description="0: never saved. Send it back (or If-Match) to update safely")
    api_key: ApiKeyInfo
    updated_at: str | None = Field(description="ISO-8601, UTC; null when never saved")


class AllConfigs(BaseModel):
    text: BackendConfig
    multimodal: BackendConfig
    image: BackendConfig


class ConfigUpdate(BaseModel):
    """A backend type's config. It replaces the stored one; an api_key given here is stored too."""

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: Text = Field(
        min_length=1, description="One of the presets' providers for this backend type"
    )
    model: Text = Field("", description="Empty: the provider's default model")
    temperature: float | None = Field(None, allow_inf_nan=False)
    mode: ModeName | None = None
    options: dict[Text, Text] = Field(default_factory=dict)
    base_url: Text = ""
    version: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="The version you last read; a newer stored version answers 409",
    )
    api_key: ApiKey | None = None


class LegacyConfigUpdate(ConfigUpdate):
    """The single-config body of the first API version: the text config."""

    model_config = ConfigDict(extra="ignore", strict=True)


class AllConfigsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: ConfigUpdate | None = None
    multimodal: ConfigUpdate | None = None
    image: ConfigUpdate | None = None


def _update_shape(body: Any) -> str:
    if isinstance(body, dict) and body and set(body) <= {"text", "multimodal", "image"}:
        return "tag:all-configs"
    return "tag:single-config"


LlmSettingsUpdate = Annotated[
    # Tags start with "tag:" so that error locations can leave them out (gateway.errors).
    Annotated[AllConfigsUpdate, Tag("tag:all-configs")]
    | Annotated[LegacyConfigUpdate, Tag("tag:single-config")],
    Discriminator(_update_shape),
]


class ApiKeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    api_key: ApiKey
    provider: Text = Field("", description="Empty: the provider of the current config")


class Preset(BaseModel):
    provider: str
    backend_type: BackendTypeName
    display_name: str
    api_style: str
    models: list[str]
    default_model: str
    temperature_min: float
    temperature_max: float
    default_temperature: float
    member_allowed: bool
    user_base_url_allowed: bool
    default_base_url: str


class PresetList(BaseModel):
    presets: list[Preset]


# ---- billing ----


class Balance(BaseModel):
    balance_micros: int = Field(description="Available micro-credits: total less open holds")
    held_micros: int
    balance: str = Field(description="Available credits as a decimal string, e.g. '4.250000'")


class UsageTotal(BaseModel):
    backend_type: BackendTypeName
    provider: str
    model: str
    mode: ModeName | None
    requests: int
    input_tokens: int
    output_tokens: int
    images: int
    cost_micros: int


class BackendTypeUsage(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    images: int
    cost_micros: int


class Usage(BaseModel):
    totals: list[UsageTotal] = Field(description="Per backend type, provider, model and mode")
    by_backend_type: dict[BackendTypeName, BackendTypeUsage]
