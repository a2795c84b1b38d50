"""Every generated image is checked before it leaves image-svc: Pillow must read it as the
format it claims, it must have the size asked for, and its metadata is removed (PNG text/time/
EXIF chunks, JPEG APPn/COM segments other than JFIF, WebP EXIF/XMP) without re-encoding the
pixels, so a 4 MB image costs a parse, not a recompression."""

from __future__ import annotations

import io
import struct

from PIL import Image, UnidentifiedImageError

from svc_common.errors import UPSTREAM_ERROR, Unavailable

_FORMAT_MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# PNG chunks that carry no pixels or colour: text, time, EXIF.
_PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"eXIf"}


class CheckedImage:
    __slots__ = ("data", "height", "media_type", "width")

    def __init__(self, data: bytes, media_type: str, width: int, height: int) -> None:
        self.data = data
        self.media_type = media_type
        self.width = width
        self.height = height


def _refuse(provider: str, what: str) -> Unavailable:
    return Unavailable(f"{provider} returned an image that {what}", reason=UPSTREAM_ERROR)


def check_image(data: bytes, provider: str, expected: tuple[int, int]) -> CheckedImage:
    """The image with its metadata removed; Unavailable (UPSTREAM_ERROR) when it is not a real
    image of the expected size ((0, 0): any size)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            width, height = image.size
            image.verify()  # structure and checksums, without decoding every pixel
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error):
        raise _refuse(provider, "is not a readable image") from None
    media_type = _FORMAT_MEDIA.get(kind)
    if media_type is None:
        raise _refuse(provider, f"is in an unexpected format ({kind or 'unknown'})")
    if expected != (0, 0) and (width, height) != expected:
        raise _refuse(
            provider, f"is {width}x{height}, not the {expected[0]}x{expected[1]} asked for"
        )
    if kind == "PNG":
        data = _strip_png(data)
    elif kind == "JPEG":
        data = _strip_jpeg(data)
    else:
        data = _strip_webp(data)
    return CheckedImage(data, media_type, width, height)


def _strip_png(data: bytes) -> bytes:
    out = [data[:8]]
    offset = 8
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if kind not in _PNG_METADATA:
            out.append(data[offset:end])
        offset = end
        if kind == b"IEND":
            break
    return b"".join(out)


def _strip_jpeg(data: bytes) -> bytes:
    out = [data[:2]]
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            break
        marker = data[offset + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            out.append(data[offset:])
            return b"".join(out)
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        segment = data[offset : offset + 2 + length]
        is_jfif = marker == 0xE0 and segment[4:9] == b"JFIF\x00"
        # APP0..APP15 (EXIF, XMP, ICC is APP2: kept for colour) and COM go, JFIF stays.
        if not ((0xE0 <= marker <= 0xEF and marker != 0xE2 and not is_jfif) or marker == 0xFE):
            out.append(segment)
        offset += 2 + length
    return b"".join(out) if len(out) > 1 else data


def _strip_webp(data: bytes) -> bytes:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    chunks = []
    offset = 12
    while offset + 8 <= len(data):
        kind = data[offset : offset + 4]
        (length,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        end = offset + 8 + length + (length & 1)
        if kind not in (b"EXIF", b"XMP "):
            chunk = bytearray(data[offset:end])
            if kind == b"VP8X":  # clear the EXIF and XMP flags of what was removed
                chunk[8] &= ~0x0C & 0xFF
            chunks.append(bytes(chunk))
        offset = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
