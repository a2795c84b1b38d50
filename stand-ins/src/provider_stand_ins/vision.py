"""What the chat stand-ins see in an image, and what the real providers refuse.

Each image is decoded (Pillow) and described in one deterministic word that the reply echoes:
``image:<format>:<W>x<H>:<dominant colour>`` (e.g. ``image:png:64x48:red``), so a test proves
which bytes arrived in the provider's own format. Image input tokens are counted as
ceil(W x H / 750). Refusals carry the providers' own messages:
- Anthropic: a base64 image over 5 MB (``image exceeds 5 MB maximum: N bytes > 5242880 bytes``);
- Ollama: ``images`` entries that are not raw base64 (a ``data:`` prefix fails at byte 4:
  ``illegal base64 data at input byte 4``, as Go's decoder says);
- every provider: bytes that are not an image it reads.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import string
from typing import Any

from PIL import Image

ANTHROPIC_MAX_BYTES = 5 * 1024 * 1024
_B64 = frozenset(string.ascii_letters + string.digits + "+/=")
_COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "grey": (128, 128, 128),
    "orange": (255, 165, 0),
}


_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


class ImageRefused(Exception):
    """The provider's 400 for an image, with its message."""


def describe(data: bytes) -> tuple[str, int]:
    """(the word the reply echoes, input tokens) of an image's bytes."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        raise ImageRefused("Could not process image") from None
    width, height = image.size
    small = image.convert("RGB").resize((1, 1), Image.Resampling.BOX)
    pixel = small.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    colour = min(
        _COLOURS,
        key=lambda n: sum((a - b) ** 2 for a, b in zip(_COLOURS[n], pixel, strict=False)),
    )
    word = f"image:{(image.format or 'unknown').lower()}:{width}x{height}:{colour}"
    return word, math.ceil(width * height / 750)


def _data_url_bytes(url: str) -> bytes:
    head, _, payload = url.partition(",")
    if ";base64" not in head:
        raise ImageRefused("Invalid image URL: expected a base64 data URL")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused("Invalid base64 image data") from None


def openai_part(part: dict[str, Any], where: str = "") -> tuple[str, int]:
    """An OpenAI ``image_url`` part: ``{"url": ...}`` or, as Ollama's /v1 takes it, a string."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise ImageRefused("Invalid image_url: expected a URL")
    if url.startswith("data:"):
        return describe(_data_url_bytes(url))
    if url.startswith("https://"):
        return "image:url", 85  # a real provider would fetch it; the stand-in notes it
    raise ImageRefused("Invalid image URL: only https and data URLs are supported")


def anthropic_block(block: dict[str, Any], where: str) -> tuple[str, int]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise ImageRefused(f"{where}.source: Field required")
    if source.get("type") == "url":
        return "image:url", 1600
    data = source.get("data")
    if not isinstance(data, str):
        raise ImageRefused(f"{where}.source.base64.data: Field required")
    if data.startswith("data:"):
        raise ImageRefused(f"{where}.source.base64.data: invalid base64 data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(f"{where}.source.base64.data: invalid base64 data") from None
    if len(raw) > ANTHROPIC_MAX_BYTES:
        raise ImageRefused(
            f"{where}.source.base64: image exceeds 5 MB maximum: "
            f"{len(raw)} bytes > {ANTHROPIC_MAX_BYTES} bytes"
        )
    word, tokens = describe(raw)
    media_type = source.get("media_type")
    if media_type != _MEDIA_TYPES.get(word.split(":")[1]):
        raise ImageRefused(
            f"{where}.source.base64.media_type: Image does not match the provided media type "
            f"{media_type}"
        )
    return word, tokens


def ollama_image(data: Any) -> tuple[str, int]:
    """One entry of a message's ``images``: raw base64, decoded as Go's StdEncoding does."""
    if not isinstance(data, str):
        raise ImageRefused("illegal base64 data at input byte 0")
    for index, ch in enumerate(data):
        if ch not in _B64:
            raise ImageRefused(f"illegal base64 data at input byte {index}")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefused(f"illegal base64 data at input byte {len(data)}") from None
    return describe(raw)
