"""Server-level knobs that shape a stand-in's replies and failures, and the deterministic reply.

The reply is "Echo: <last user message>" cut or padded to ``chunks`` words (padding words are
the 1-based word positions), one word per stream chunk; tokens are counted as words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any


@dataclasses.dataclass(slots=True)
class Behaviour:
    """Knobs of one stand-in. Settable at construction, at runtime, and over HTTP."""

    chunks: int = 20
    """Reply length in words; a stream sends one word per chunk."""
    token_delay_s: float = 0.0
    """Wait before each content chunk (non-stream replies wait ``chunks`` times this)."""
    first_byte_delay_s: float = 0.0
    """Wait before the response headers."""
    error_status: int | None = None
    """Fail generation requests with this status and the provider's error body."""
    retry_after_s: float = 1.0
    """The ``retry-after`` header sent with a 429."""
    fail_times: int | None = None
    """With ``error_status``: fail only the next N generation requests (None = all of them)."""
    disconnect_after_chunks: int | None = None
    """Close the connection abruptly after N content chunks: no [DONE], no message_stop."""
    stream_error_after_chunks: int | None = None
    """Send the provider's mid-stream error event after N content chunks, then end the stream."""
    hang: bool = False
    """Never answer generation requests (until the client leaves or the server stops)."""
    accept_any_key: bool = False
    """Demo mode: every key is accepted (and still recorded)."""
    accept_any_model: bool = False
    """Demo mode: every model name is accepted."""
    # Image generation (openai images, stability, automatic1111, comfyui).
    image_steps: int = 20
    """Sampling steps of an image job where the request does not set them (OpenAI, Stability)."""
    step_delay_s: float = 0.0
    """Time one sampling step takes on the stand-in's clock."""
    queue_limit: int | None = None
    """A1111/ComfyUI: refuse a job once this many are queued or running (None = no limit)."""
    hold_queue: bool = False
    """A1111/ComfyUI: start no queued job while set, so a test can build a queue."""
    content_filtered: bool = False
    """Refuse or blur images the way each provider's safety filter does."""
    disconnect_after_steps: int | None = None
    """Drop the connection (HTTP or websocket) after N sampling steps of a job."""
    error_after_steps: int | None = None
    """Fail a job after N sampling steps with the provider's mid-job error."""
    grain: bool = False
    """OpenAI images: seeded noise over the final image, so its PNG is about as large as its
    pixels (3 bytes each), as a photo's is; the drawn pictures alone compress 30x and more."""

    def updated(self, changes: Mapping[str, Any]) -> Behaviour:
        """A copy with ``changes`` applied; unknown knobs or wrong types raise ValueError."""
        for name, value in changes.items():
            _check_knob(name, value)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_KNOB_TYPES: dict[str, tuple[type, ...]] = {
    "chunks": (int,),
    "token_delay_s": (int, float),
    "first_byte_delay_s": (int, float),
    "error_status": (int, type(None)),
    "retry_after_s": (int, float),
    "fail_times": (int, type(None)),
    "disconnect_after_chunks": (int, type(None)),
    "stream_error_after_chunks": (int, type(None)),
    "hang": (bool,),
    "accept_any_key": (bool,),
    "accept_any_model": (bool,),
    "image_steps": (int,),
    "step_delay_s": (int, float),
    "queue_limit": (int, type(None)),
    "hold_queue": (bool,),
    "content_filtered": (bool,),
    "disconnect_after_steps": (int, type(None)),
    "error_after_steps": (int, type(None)),
    "grain": (bool,),
}


def _check_knob(name: str, value: Any) -> None:
    types = _KNOB_TYPES.get(name)
    if types is None:
        raise ValueError(f"unknown knob {name!r}; known: {', '.join(_KNOB_TYPES)}")
    if isinstance(value, bool) and bool not in types:
        raise ValueError(f"knob {name!r} takes {types[0].__name__}, got {value!r}")
    if not isinstance(value, types):
        raise ValueError(f"knob {name!r} takes {types[0].__name__}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"knob {name!r} must not be negative, got {value!r}")
    if name == "error_status" and isinstance(value, int) and not 400 <= value <= 599:
        raise ValueError(f"error_status must be a 4xx or 5xx status, got {value!r}")


@lru_cache(maxsize=1024)
def reply_words(prompt: str, count: int) -> tuple[str, ...]:
    """The reply to ``prompt`` as ``count`` words: "Echo:", the prompt's words, then 4, 5, ...

    >>> reply_words("hello there", 5)
    ('Echo:', 'hello', 'there', '4', '5')
    """
    words = ["Echo:", *prompt.split()][:count]
    words.extend(str(position) for position in range(len(words) + 1, count + 1))
    return tuple(words)


@lru_cache(maxsize=1024)
def reply_pieces(prompt: str, count: int) -> tuple[str, ...]:
    """The reply split into stream chunks: one word each, later words with a leading space."""
    words = reply_words(prompt, count)
    return tuple(word if index == 0 else " " + word for index, word in enumerate(words))


def reply_text(prompt: str, count: int) -> str:
    """The whole reply text, as a non-stream response carries it."""
    return " ".join(reply_words(prompt, count))


def count_words(text: str) -> int:
    """Token count of a text: its whitespace-separated words."""
    return len(text.split())


def read_prompt(
    messages: Any,
    image_part: str,
    system: Any = None,
    see: Callable[[dict[str, Any], str], tuple[str, int]] | None = None,
) -> tuple[str, int, int]:
    """(last user text, prompt tokens, images) of a chat's messages, in any provider's shape.

    Content is a string or a list of parts; `image_part` names the provider's image part type
    ("image_url" for OpenAI, "image" for Anthropic). Tokens are words, as in every reply.
    `see(part, where)` (provider_stand_ins.vision) describes an image part in one word that joins
    the text, and its tokens; it raises vision.ImageRefused for what the provider refuses.
    """
    images = 0
    image_tokens = 0

    def text_of(content: Any, where: str) -> str:
        nonlocal images, image_tokens
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            return ""
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == image_part:
                images += 1
                if see is not None:
                    word, tokens = see(part, f"{where}.content.{index}.{image_part}")
                    texts.append(word)
                    image_tokens += tokens - 1  # the word itself counts once below
        return " ".join(texts)

    prompt = ""
    tokens = len(text_of(system, "system").split())
    for number, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        text = text_of(message.get("content"), f"messages.{number}")
        tokens += len(text.split())
        if message.get("role") == "user":
            prompt = text
    return prompt, tokens + image_tokens, images
