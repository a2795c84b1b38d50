"""Image intake: every image of a request read, checked and normalised once, before any provider
is called. A bad image is an InvalidArgument that says what is wrong, never a provider error.

- data: URLs: base64 checked, size capped per image and per request (decoded bytes);
- https URLs: only when the operator allows remote images, through `upstream.fetch_bytes` (the
  platform's one SSRF-safe fetcher); plain http never; nothing is cached by URL;
- the format is sniffed from the bytes (PNG, JPEG, WEBP, GIF); a data URL that says otherwise is
  refused as mislabelled; an animated GIF is reduced to its first frame (or refused, by setting);
- dimensions and pixels capped before anything is decoded (the decompression-bomb guard), then
  the image is decoded to prove it whole (a truncated file is refused);
- normalised for the provider: Anthropic gets at most 5 MB and a long edge of at most 1568 px
  (resized, EXIF orientation applied, metadata stripped); Ollama raw bytes (its codec sends raw
  base64); OpenAI and compatible servers a data URL, or the https URL itself when the operator
  lets OpenAI fetch it.
Pillow's work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from chat_codecs import ImagePart
from multimodal_svc.environment import Settings
from svc_common.errors import InvalidArgument
from upstream import FetchFailed, fetch_bytes

ANTHROPIC_MAX_BYTES = 5 * 1024 * 1024
ANTHROPIC_MAX_EDGE = 1568
# Providers that take an image as a data URL (OpenAI and OpenAI-compatible servers).
_DATA_URL_STYLES = frozenset({"openai", "openai_compatible"})
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True, slots=True)
class ImageSource:
    """An image as the caller gave it: bytes, or a data:/https URL."""

    where: str  # e.g. "messages[0].content[1]", for error messages
    data: bytes = field(default=b"", repr=False)
    url: str = field(default="", repr=False)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReadyImage:
    """An image ready for the provider, with the size the provider will see (0x0: unknown, the
    provider fetches the URL itself)."""

    part: ImagePart
    width: int
    height: int


def _bad(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}", param=where)


def sniff(data: bytes) -> str | None:
    """The image format the bytes are (PNG/JPEG/WEBP/GIF), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


_OTHER_IMAGES = (b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00", b"8BPS")


def _decode_data_url(url: str, where: str, max_bytes: int) -> tuple[bytes, str]:
    """(bytes, declared media type) of a data: URL."""
    head, comma, payload = url.partition(",")
    if not comma:
        raise _bad(where, "the data URL has no ',' before its data")
    params = head[5:].split(";")
    if "base64" not in params[1:]:
        raise _bad(where, "the data URL must be base64 (data:image/png;base64,...)")
    declared = params[0].strip().lower()
    # Decoded size from the encoded length, so an oversized image is refused before decoding.
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise _bad(where, f"the image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(where, "the data URL's base64 is not valid") from None
    if len(data) > max_bytes:
        raise _bad(where, f"the image is larger than {max_bytes} bytes")
    return data, declared


class ImageIntake:
    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._ssl: ssl.SSLContext | None = None
        if settings.image_fetch_ca_file:
            self._ssl = ssl.create_default_context(cafile=settings.image_fetch_ca_file)

    async def prepare(self, sources: Sequence[ImageSource], api_style: str) -> list[ReadyImage]:
        """Every image of a request, ready for `api_style`'s provider; raises InvalidArgument."""
        s = self._s
        if len(sources) > s.max_images:
            raise InvalidArgument(
                f"a request may carry at most {s.max_images} images, not {len(sources)}",
                param="messages",
            )
        raw: list[tuple[ImageSource, bytes, str]] = []
        total = 0
        for source in sources:
            if source.url and api_style == "openai" and s.openai_fetches_image_urls:
                if source.url.startswith("https://"):
                    raw.append((source, b"", ""))  # OpenAI fetches it itself
                    continue
            data, declared = await self._read(source)
            total += len(data)
            if total > s.max_request_image_bytes:
                raise InvalidArgument(
                    f"the request's images are larger than {s.max_request_image_bytes} bytes "
                    "together",
                    param=source.where,
                )
            raw.append((source, data, declared))
        ready = []
        for source, data, declared in raw:
            if not data:
                ready.append(ReadyImage(ImagePart(url=source.url, detail=source.detail), 0, 0))
            else:
                ready.append(
                    await asyncio.to_thread(self._normalise, source, data, declared, api_style)
                )
        return ready

    async def _read(self, source: ImageSource) -> tuple[bytes, str]:
        s, where = self._s, source.where
        if source.data:
            if len(source.data) > s.max_image_bytes:
                raise _bad(where, f"the image is larger than {s.max_image_bytes} bytes")
            return source.data, ""
        url = source.url
        if url[:5].lower() == "data:":
            return _decode_data_url(url, where, s.max_image_bytes)
        scheme = url.partition(":")[0].lower()
        if scheme not in ("https", "http"):
            raise _bad(where, "an image URL must be a data: URL or an https URL")
        if scheme == "http":
            raise _bad(where, "image URLs must use https (plain http is never fetched)")
        if not s.remote_images:
            raise _bad(where, "image URLs are not allowed here: send the image as a data: URL")
        try:
            fetched = await fetch_bytes(
                url,
                s.max_image_bytes,
                s.image_fetch_timeout_s,
                allowed_hosts=s.allowed_image_hosts,
                ssl_context=self._ssl,
            )
        except FetchFailed as err:
            words = {
                "not_allowed": "the image URL is not allowed",
                "too_large": "the image is too large",
                "timed_out": "fetching the image timed out",
                "failed": "fetching the image failed",
            }[err.kind]
            raise _bad(where, f"{words}: {err.reason}") from None
        return fetched.data, ""

    def _normalise(
        self, source: ImageSource, data: bytes, declared: str, api_style: str
    ) -> ReadyImage:
        s, where = self._s, source.where
        kind = sniff(data)
        if kind is None:
            if data.startswith(_OTHER_IMAGES):
                raise _bad(where, "unsupported image format: send PNG, JPEG, WEBP or GIF")
            raise _bad(where, "the data is not an image (PNG, JPEG, WEBP or GIF)")
        media_type = FORMATS[kind]
        if declared and declared != media_type and declared != "image/jpg":
            raise _bad(where, f"the data URL says {declared[:40]} but the bytes are a {kind} image")
        try:
            image = Image.open(io.BytesIO(data), formats=[kind])
            width, height = image.size  # read from the header: nothing decoded yet
        except Image.DecompressionBombError:
            raise _bad(
                where, f"the image has too many pixels; at most {s.max_image_pixels}"
            ) from None
        except (OSError, ValueError):
            raise _bad(where, f"the {kind} image is corrupt or truncated") from None
        if width > s.max_image_side or height > s.max_image_side:
            raise _bad(
                where,
                f"the image is {width}x{height} pixels; at most {s.max_image_side} on a side",
            )
        if width * height > s.max_image_pixels:
            raise _bad(
                where,
                f"the image has too many pixels ({width}x{height}); at most {s.max_image_pixels}",
            )
        animated = kind == "GIF" and getattr(image, "n_frames", 1) > 1
        if animated and s.animated_gif == "refuse":
            raise _bad(where, "animated GIFs are not accepted: send one frame")
        resize = api_style == "anthropic" and (
            max(width, height) > ANTHROPIC_MAX_EDGE or len(data) > ANTHROPIC_MAX_BYTES
        )
        try:
            if not (resize or animated):
                # The file must end where its format says it ends (a truncated one does not);
                # decoding it all would cost ~10 ms per MB, and the provider decodes it anyway.
                if not _ends_whole(kind, data):
                    raise _bad(where, f"the {kind} image is corrupt or truncated")
                if source.url and declared == media_type and api_style in _DATA_URL_STYLES:
                    # OpenAI-style providers take the data URL itself: no second base64 pass.
                    part = ImagePart(url=source.url, detail=source.detail)
                else:
                    part = ImagePart(data=data, media_type=media_type, detail=source.detail)
                return ReadyImage(part, width, height)
            image.seek(0)
            frame = ImageOps.exif_transpose(image)  # orientation applied, then EXIF dropped
            if resize:
                frame.thumbnail((ANTHROPIC_MAX_EDGE, ANTHROPIC_MAX_EDGE), Image.Resampling.LANCZOS)
            out, out_type = _encode(frame, kind if not animated else "PNG")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise _bad(where, f"the {kind} image is corrupt or truncated") from None
        if api_style == "anthropic" and len(out) > ANTHROPIC_MAX_BYTES:
            raise _bad(where, "the image is too large for Anthropic even after resizing")
        part = ImagePart(data=out, media_type=out_type, detail=source.detail)
        return ReadyImage(part, frame.width, frame.height)


def _ends_whole(kind: str, data: bytes) -> bool:
    """Whether the file ends as its format requires: PNG's IEND chunk, JPEG's EOI marker,
    GIF's trailer, WEBP's RIFF length."""
    if kind == "PNG":
        return data.endswith(b"IEND\xaeB`\x82")
    if kind == "JPEG":
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if kind == "GIF":
        return data.rstrip(b"\x00").endswith(b"\x3b")
    return int.from_bytes(data[4:8], "little") + 8 <= len(data)  # WEBP


def _encode(image: Image.Image, kind: str) -> tuple[bytes, str]:
    """The image re-encoded without metadata: JPEG stays JPEG, anything with transparency PNG."""
    buffer = io.BytesIO()
    if kind == "JPEG" or (image.mode in ("RGB", "L", "CMYK") and kind != "PNG"):
        image.convert("RGB").save(buffer, "JPEG", quality=85, optimize=True)
        return buffer.getvalue(), "image/jpeg"
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    image.save(buffer, "PNG", optimize=False)
    return buffer.getvalue(), "image/png"
