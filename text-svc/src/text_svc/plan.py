"""A GenerateRequest and the caller's config become a Plan: which endpoint and model to call
(and which to fall back to), with which parameters, and the worst case a credit hold must cover.
Every rejection is an InvalidArgument (or FailedPrecondition) that says what to change."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass

from chat_codecs import ChatRequest, Message
from chat_codecs.options import chat_options, input_bytes, tool_message
from grpc_stubs.text.v1 import text_pb2
from svc_common.auth import Caller
from svc_common.errors import FailedPrecondition, InvalidArgument, NotFound
from svc_common.names import api_style_for
from text_svc.config_source import TextConfig
from text_svc.environment import KNOWN_PROVIDERS, Settings
from upstream import Endpoint, Route

log = logging.getLogger(__name__)

ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_STOP_SEQUENCES = 4
MAX_MODEL_NAME = 256
MAX_REQUEST_ID = 128
# Providers whose models the user chooses (a local server's own models): any name is accepted.
USER_CHOSEN_MODELS = frozenset({"openai_compatible", "ollama"})
_TEMPERATURE_RANGES = {"anthropic": (0.0, 1.0)}
_DEFAULT_TEMPERATURE_RANGE = (0.0, 2.0)
# Per message, for the role and the provider's framing tokens, in the input upper bound.
_PER_MESSAGE_OVERHEAD = 16


@dataclass(frozen=True, slots=True)
class Plan:
    # Minted by text-svc for this one call: the hold id and the usage event id. Never the
    # caller's id, which anyone can repeat (issue 7: a reused id made member requests free).
    request_id: str
    config: TextConfig
    call: ChatRequest  # for the primary route; a fallback changes only the model
    routes: tuple[Route, ...]  # the primary, then at most one fallback
    input_tokens_bound: int  # upper bound on input tokens (UTF-8 bytes + overhead per message)
    output_tokens_cap: int  # the max_tokens in force (sent to the provider in member mode)
    correlation_id: str = ""  # the caller's x-request-id: for logs only, never for money

    @property
    def mode(self) -> str:
        return self.config.mode


def mint_request_id() -> str:
    """A fresh id for one Generate or GenerateStream call: its hold and usage event id."""
    return uuid.uuid4().hex


def correlation_id_for(request: text_pb2.GenerateRequest, who: Caller) -> str:
    """The caller's id for this request (body, else x-request-id metadata), for logs only."""
    correlation_id = request.request_id or who.request_id
    if len(correlation_id) > MAX_REQUEST_ID or not correlation_id.isprintable():
        raise InvalidArgument(
            f"request_id must be at most {MAX_REQUEST_ID} printable characters",
            param="request_id",
        )
    return correlation_id


def plan_generation(
    request: text_pb2.GenerateRequest,
    config: TextConfig,
    settings: Settings,
    request_id: str,
    correlation_id: str = "",
) -> Plan:
    messages = _messages(request)
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
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise InvalidArgument(
            f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed", param="stop"
        )
    if any(not s for s in request.stop):
        raise InvalidArgument("stop sequences must not be empty", param="stop")

    requested = request.max_tokens if request.HasField("max_tokens") else None
    if requested is not None and not 1 <= requested <= settings.max_tokens_limit:
        raise InvalidArgument(
            f"max_tokens must be between 1 and {settings.max_tokens_limit}", param="max_tokens"
        )
    cap = requested or settings.default_max_tokens
    # Member mode always sends the cap, so the provider cannot bill more than the hold covers;
    # Anthropic requires one anyway.
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
        presence_penalty=(
            request.presence_penalty if request.HasField("presence_penalty") else None
        ),
        frequency_penalty=(
            request.frequency_penalty if request.HasField("frequency_penalty") else None
        ),
        tools=options.tools,
        tool_choice=options.tool_choice,
        response_format=options.response_format,
        parallel_tool_calls=options.parallel_tool_calls,
        logprobs=options.logprobs,
        top_logprobs=options.top_logprobs,
    )
    primary = Route(endpoint_for(config, settings), model)
    fallback = fallback_route(config, settings, primary)
    routes = (primary, fallback) if fallback else (primary,)
    # Tool definitions and the response schema are input the provider reads (and bills) too.
    input_bound = sum(input_bytes(m) + _PER_MESSAGE_OVERHEAD for m in messages)
    input_bound += options.input_bytes
    return Plan(request_id, config, call, routes, input_bound, cap, correlation_id)


def _messages(request: text_pb2.GenerateRequest) -> tuple[Message, ...]:
    if not request.messages:
        raise InvalidArgument("messages must not be empty: send at least one", param="messages")
    messages = []
    for i, m in enumerate(request.messages):
        if m.role not in ROLES:
            raise InvalidArgument(
                f"messages[{i}].role must be system, user, assistant or tool, not {m.role[:20]!r}",
                param=f"messages[{i}].role",
            )
        parts = tool_message(f"messages[{i}]", m.role, m.tool_call_id, m.content, m.tool_calls)
        if parts is not None:
            messages.append(Message(m.role, parts, m.name))
        else:
            messages.append(Message.of_text(m.role, m.content, m.name))
    return tuple(messages)


def _model(requested: str, config: TextConfig) -> str:
    if requested in ("", "default"):
        if not config.model:
            raise FailedPrecondition(
                "no model is configured for text: choose one in your settings", param="model"
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
        # OpenAI's answer to an unknown model: 404 model_not_found (the gateway maps it).
        raise NotFound(
            f"model {requested[:MAX_MODEL_NAME]!r} is not offered for {config.provider}; "
            f"use one of: {', '.join(offered)}",
            param="model",
        )
    return requested


def _temperature_range(config: TextConfig) -> tuple[float, float]:
    if config.temperature_min is not None and config.temperature_max is not None:
        return config.temperature_min, config.temperature_max
    return _TEMPERATURE_RANGES.get(config.api_style, _DEFAULT_TEMPERATURE_RANGE)


def endpoint_for(config: TextConfig, settings: Settings) -> Endpoint:
    """Where to send the caller's requests, and with which key (theirs, or the platform's)."""
    provider = config.provider
    base_url = config.base_url or _operator_base_url(provider, config.api_style, settings)
    if not base_url:
        raise FailedPrecondition(
            f"no base URL is configured for provider {provider!r}: set one in your text settings"
        )
    if config.mode == "byok":
        api_key = config.api_key
        if not api_key and config.api_style in ("openai", "anthropic"):
            raise FailedPrecondition(
                f"no {provider} API key is set for text: add your key in settings, "
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


def _operator_base_url(provider: str, api_style: str, settings: Settings) -> str:
    base_url = settings.operator_base_url(provider)
    if provider == "ollama" and api_style == "openai_compatible" and base_url:
        return base_url.rstrip("/") + "/v1"  # Ollama's OpenAI-compatible API
    return base_url


def fallback_route(config: TextConfig, settings: Settings, primary: Route) -> Route | None:
    """The fallback (the config's option, else the operator's), if there is one to call.

    "provider:model" names another provider only when the prefix is a provider text-svc knows
    (model names such as "llama3:8b" contain colons too). Another provider needs the platform's
    key, so BYOK callers fall back only to another model of their own provider.

    In member mode the fallback runs on the platform's key and is paid from the caller's hold, so
    it must be offered to the caller: a config's fallback only as another offered model of the
    config's own provider (settings-svc checks this when the config is saved; it is checked again
    here because presets and configs saved before that check change), the operator's fallback
    also on another provider, since the operator offers it. billing-svc then prices every route
    and holds for the dearest, or refuses the hold when one has no price.
    """
    own_spec = config.fallback.strip()
    spec = own_spec or settings.fallback.strip()
    if not spec:
        return None
    prefix, sep, rest = spec.partition(":")
    if sep and rest and (prefix in KNOWN_PROVIDERS or prefix == config.provider):
        provider, model = prefix, rest
    else:
        provider, model = config.provider, spec
    if config.mode == "member" and not _offered_fallback(config, provider, model, own_spec):
        log.warning(
            "ignoring the %s fallback %s:%s: it is not offered in member mode for %s",
            "config's" if own_spec else "operator's",
            provider,
            model[:MAX_MODEL_NAME],
            config.provider,
        )
        return None
    if provider == config.provider:
        endpoint = primary.endpoint
    elif config.mode == "member":
        api_key = settings.platform_key(provider)
        style = api_style_for(provider)
        base_url = _operator_base_url(provider, style, settings)
        if not base_url or (not api_key and style in ("openai", "anthropic")):
            return None
        endpoint = Endpoint(provider, style, base_url, api_key)
    else:
        return None
    if endpoint == primary.endpoint and model == primary.model:
        return None
    return Route(endpoint, model)


def _offered_fallback(config: TextConfig, provider: str, model: str, own_spec: str) -> bool:
    if provider != config.provider:
        # The config offers only its own provider's models; another provider is the operator's
        # to offer.
        return not own_spec
    if config.api_style in USER_CHOSEN_MODELS:
        return len(model) <= MAX_MODEL_NAME  # whatever the server has, as for the primary
    return model in (config.models or (config.model,))


def output_tokens_estimate(deltas: int, chars: int) -> int:
    """Output tokens when the provider reported none: at least one per delta, about 4 chars each."""
    return max(deltas, math.ceil(chars / 4))
