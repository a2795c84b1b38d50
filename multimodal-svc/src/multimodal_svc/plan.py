"""A GenerateRequest and the caller's config become a Plan: the endpoint and model to call, the
parameters, the images to take in, and the worst case a credit hold must cover. Every rejection
is an InvalidArgument (or FailedPrecondition) that says what to change."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, replace

from chat_codecs import ChatRequest, ImagePart, Message, Part, TextPart
from chat_codecs.options import chat_options, input_bytes, tool_message
from grpc_stubs.multimodal.v1 import multimodal_pb2
from multimodal_svc.config_source import VisionConfig
from multimodal_svc.environment import Settings
from multimodal_svc.image_tokens import image_tokens
from multimodal_svc.intake import ImageSource, ReadyImage
from svc_common.auth import Caller
from svc_common.errors import FailedPrecondition, InvalidArgument
from upstream import Endpoint, Route

ROLES = frozenset({"system", "user", "assistant", "tool"})
DETAILS = frozenset({"", "auto", "low", "high"})
MAX_STOP_SEQUENCES = 4
MAX_MODEL_NAME = 256
MAX_REQUEST_ID = 128
USER_CHOSEN_MODELS = frozenset({"openai_compatible", "ollama"})
_TEMPERATURE_RANGES = {"anthropic": (0.0, 1.0)}
_PER_MESSAGE_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class Plan:
    request_id: str  # minted here: the hold id and the usage event id
    config: VisionConfig
    call: ChatRequest  # images still as their sources' placeholders until `with_images`
    route: Route
    images: tuple[ImageSource, ...]
    # UTF-8 bytes of the text, tool calls and results, tool definitions and response schema,
    # + overhead per message
    text_tokens_bound: int
    output_tokens_cap: int
    image_tokens: int = 0  # filled by with_images
    correlation_id: str = ""

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def input_tokens_bound(self) -> int:
        return self.text_tokens_bound + self.image_tokens

    def with_images(self, ready: list[ReadyImage]) -> Plan:
        """The plan with each image placeholder replaced by its normalised image, and the image
        tokens the provider will count for them."""
        queue = iter(ready)
        messages = []
        for m in self.call.messages:
            if any(isinstance(p, ImagePart) for p in m.content):
                parts: list[Part] = [
                    next(queue).part if isinstance(p, ImagePart) else p for p in m.content
                ]
                m = replace(m, content=tuple(parts))
            messages.append(m)
        tokens = sum(
            image_tokens(self.config.api_style, self.route.model, r.width, r.height, r.part.detail)
            for r in ready
        )
        return replace(self, call=replace(self.call, messages=tuple(messages)), image_tokens=tokens)


def mint_request_id() -> str:
    return uuid.uuid4().hex


def correlation_id_for(request: multimodal_pb2.GenerateRequest, who: Caller) -> str:
    correlation_id = request.request_id or who.request_id
    if len(correlation_id) > MAX_REQUEST_ID or not correlation_id.isprintable():
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID} printable characters",
            param="request_id",
        )
    return correlation_id


def plan_generation(
    request: multimodal_pb2.GenerateRequest,
    config: VisionConfig,
    settings: Settings,
    request_id: str,
    correlation_id: str = "",
) -> Plan:
    messages, images, text_bound = _messages(request)
    model = _model(request.model, config)
    low, high = _temperature_range(config)
    temperature = request.temperature if request.HasField("temperature") else config.temperature
    if temperature is not None and not low <= temperature <= high:
        raise InvalidArgument(
            f"temperature must be between {low:g} and {high:g} for {config.provider}",
            param="temperature",
        )
    top_p = request.top_p if request.HasField("top_p") else None
    if top_p is not None and not 0.0 <= top_p <= 1.0:
        raise InvalidArgument("top_p must be between 0 and 1", param="top_p")
    for name in ("presence_penalty", "frequency_penalty"):
        if request.HasField(name) and not -2.0 <= getattr(request, name) <= 2.0:
            raise InvalidArgument(f"{name} must be between -2 and 2", param=name)
    if len(request.stop) > MAX_STOP_SEQUENCES or any(not s for s in request.stop):
        raise InvalidArgument(
            f"at most {MAX_STOP_SEQUENCES} non-empty stop sequences are allowed", param="stop"
        )
    requested = request.max_tokens if request.HasField("max_tokens") else None
    if requested is not None and not 1 <= requested <= settings.max_tokens_limit:
        raise InvalidArgument(
            f"max_tokens must be between 1 and {settings.max_tokens_limit}", param="max_tokens"
        )
    cap = requested or settings.default_max_tokens
    # Member mode always sends the cap, so the provider cannot bill more than the hold covers.
    send_cap = requested is not None or config.mode == "member" or config.api_style == "anthropic"
    options = chat_options(request)
    call = ChatRequest(
        model=model,
        messages=messages,
        max_tokens=cap if send_cap else None,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(request.stop),
        seed=request.seed if request.HasField("seed") else None,
        presence_penalty=request.presence_penalty if request.HasField("presence_penalty") else None,
        frequency_penalty=request.frequency_penalty
        if request.HasField("frequency_penalty")
        else None,
        tools=options.tools,
        tool_choice=options.tool_choice,
        response_format=options.response_format,
        parallel_tool_calls=options.parallel_tool_calls,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
    )
    route = Route(endpoint_for(config, settings), model)
    text_bound += options.input_bytes
    return Plan(
        request_id, config, call, route, images, text_bound, cap, correlation_id=correlation_id
    )


def _messages(
    request: multimodal_pb2.GenerateRequest,
) -> tuple[tuple[Message, ...], tuple[ImageSource, ...], int]:
    if not request.messages:
        raise InvalidArgument("messages must not be empty: send at least one", param="messages")
    messages: list[Message] = []
    images: list[ImageSource] = []
    bound = 0
    for i, m in enumerate(request.messages):
        if m.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role must be system, user, assistant or tool, not {m.role[:20]!r}",
                param=f"messages[{i}].role",
            )
        if m.role == "tool" or m.tool_calls:
            # A tool's result, or an assistant's calls: text only, as on the text route.
            text = ""
            for j, p in enumerate(m.content):
                if p.WhichOneof("part") != "text":
                    where = f"messages[{i}].content[{j}]"
                    raise InvalidArgument(
                        f"{where}: only text parts go with tool calls", param=where
                    )
                text += p.text
            tool_parts = tool_message(f"messages[{i}]", m.role, m.tool_call_id, text, m.tool_calls)
            assert tool_parts is not None  # a tool message, or calls
            message = Message(m.role, tool_parts, m.name)
            messages.append(message)
            bound += input_bytes(message) + _PER_MESSAGE_OVERHEAD
            continue
        parts: list[Part] = []
        for j, p in enumerate(m.content):
            where = f"messages[{i}].content[{j}]"
            kind = p.WhichOneof("part")
            if kind == "text":
                parts.append(TextPart(p.text))
                bound += len(p.text.encode())
            elif kind == "image":
                if m.role != "user":
                    raise InvalidArgument(
                        f"{where}: only user messages may carry images", param=where
                    )
                image = p.image
                if image.detail not in DETAILS:
                    raise InvalidArgument(
                        f"{where}.detail must be low, high or auto", param=f"{where}.detail"
                    )
                source = image.WhichOneof("source")
                if source is None:
                    raise InvalidArgument(
                        f"{where}: the image has neither data nor a URL", param=where
                    )
                images.append(
                    ImageSource(where, data=image.data, url=image.url, detail=image.detail or "")
                )
                parts.append(ImagePart(detail=image.detail))  # replaced after intake
            else:
                raise InvalidArgument(f"{where}: a part must be text or an image", param=where)
        messages.append(Message(m.role, tuple(parts) or (TextPart(""),), m.name))
        bound += _PER_MESSAGE_OVERHEAD
    return tuple(messages), tuple(images), bound


def _model(requested: str, config: VisionConfig) -> str:
    if requested in ("", "default"):
        if not config.model:
            raise FailedPrecondition(
                "no model is configured for multimodal: choose one in your settings",
                param="model",
            )
        return config.model
    if config.api_style in USER_CHOSEN_MODELS:
        if len(requested) > MAX_MODEL_NAME:
            raise InvalidArgument(
                f"model names are at most {MAX_MODEL_NAME} characters", param="model"
            )
        return requested
    offered = config.models or (config.model,)
    if requested not in offered:
        raise InvalidArgument(
            f"model {requested[:MAX_MODEL_NAME]!r} is not offered for {config.provider} "
            f"(vision models only); use one of: {', '.join(offered)}",
            param="model",
        )
    return requested


def _temperature_range(config: VisionConfig) -> tuple[float, float]:
    if config.temperature_min is not None and config.temperature_max is not None:
        return config.temperature_min, config.temperature_max
    return _TEMPERATURE_RANGES.get(config.api_style, (0.0, 2.0))


def endpoint_for(config: VisionConfig, settings: Settings) -> Endpoint:
    """Where to send the caller's requests, and with which key (theirs, or the platform's)."""
    provider = config.provider
    base_url = config.base_url or settings.operator_base_url(provider)
    if provider == "ollama" and config.api_style == "openai_compatible" and not config.base_url:
        base_url = base_url.rstrip("/") + "/v1"
    if not base_url:
        raise FailedPrecondition(
            f"no base URL is configured for provider {provider!r}: set one in your "
            "multimodal settings"
        )
    if config.mode == "byok":
        api_key = config.api_key
        if not api_key and config.api_style in ("openai", "anthropic"):
            raise FailedPrecondition(
                f"no {provider} API key is set for multimodal: add your key in settings, "
                "or switch to member mode"
            )
    else:
        api_key = settings.platform_key(config.platform_key_ref or provider)
        if not api_key and config.api_style in ("openai", "anthropic"):
            raise FailedPrecondition(
                f"member mode for {provider} is not available: the operator has not configured "
                "its key; use your own key (BYOK) or another provider"
            )
    return Endpoint(
        provider, config.api_style, base_url, api_key, user_base_url=bool(config.base_url)
    )


def output_tokens_estimate(deltas: int, chars: int) -> int:
    """Output tokens when the provider reported none: at least one per delta, ~4 chars each."""
    return max(deltas, math.ceil(chars / 4))
