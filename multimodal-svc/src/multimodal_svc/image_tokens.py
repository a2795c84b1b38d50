"""Image input tokens per provider, for the worst-case hold (settlement uses the provider's own
usage). Estimates only, after the providers' published formulas:

- OpenAI tile models (GPT-4o class): `low` = base; otherwise fit in 2048x2048, shortest side to
  768, then base + per_tile x 512-px tiles (gpt-4o: 85 + 170/tile, 1024x1024 -> 765).
- OpenAI patch models (gpt-4.1 family, o4-mini): 32-px patches capped at 1536, x a per-model
  multiplier.
- Anthropic: width x height / 750, of the image as sent (after resizing).
"""

from __future__ import annotations

import math

# model prefix -> (base, per tile); longest prefix wins.
_TILE_MODELS = {"gpt-4o": (85, 170), "gpt-4o-mini": (2833, 5667), "o1": (75, 150), "o3": (75, 150)}
# model prefix -> multiplier
_PATCH_MODELS = {"gpt-4.1": 1.0, "gpt-4.1-mini": 1.62, "gpt-4.1-nano": 2.46, "o4-mini": 1.72}
_PATCH_CAP = 1536


def _by_prefix(table: dict[str, object], model: str) -> str | None:
    best = None
    for prefix in table:
        if model.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def openai_tiles(width: int, height: int, detail: str, base: int, per_tile: int) -> int:
    if detail == "low":
        return base
    if max(width, height) > 2048:
        scale = 2048 / max(width, height)
        width, height = math.floor(width * scale), math.floor(height * scale)
    if min(width, height) > 768:
        scale = 768 / min(width, height)
        width, height = math.floor(width * scale), math.floor(height * scale)
    return base + per_tile * math.ceil(width / 512) * math.ceil(height / 512)


def openai_patches(width: int, height: int, multiplier: float) -> int:
    patches = math.ceil(width / 32) * math.ceil(height / 32)
    if patches > _PATCH_CAP:
        shrink = math.sqrt(32 * 32 * _PATCH_CAP / (width * height))
        shrink *= min(
            math.floor(width * shrink / 32) / (width * shrink / 32),
            math.floor(height * shrink / 32) / (height * shrink / 32),
        )
        patches = min(_PATCH_CAP, math.ceil(width * shrink / 32) * math.ceil(height * shrink / 32))
    return math.ceil(patches * multiplier)


def image_tokens(api_style: str, model: str, width: int, height: int, detail: str) -> int:
    """Input tokens of one image as the provider will see it; width/height 0: unknown (the
    provider fetches the URL), so the largest image the formula allows."""
    if width <= 0 or height <= 0:
        width, height = (768, 2048) if api_style != "anthropic" else (1568, 1568)
    if api_style == "anthropic":
        return math.ceil(width * height / 750)
    patch = _by_prefix(dict(_PATCH_MODELS), model)
    if patch is not None:
        return openai_patches(width, height, _PATCH_MODELS[patch])
    tile = _by_prefix(dict(_TILE_MODELS), model)
    base, per_tile = _TILE_MODELS[tile] if tile is not None else (85, 170)
    return openai_tiles(width, height, detail, base, per_tile)
