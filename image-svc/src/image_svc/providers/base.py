"""What every image provider client shares: the normalised job, the events a running job
reports, and the refusal of a provider's safety filter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Job:
    """One generation, validated by the plan: what every adapter reads."""

    model: str
    prompt: str
    n: int
    width: int  # 0 with size "auto": the provider picks
    height: int
    size: str  # as sent to the provider ("1024x1024", "auto", an aspect ratio for Stability)
    quality: str = ""
    background: str = ""
    output_format: str = "png"
    negative_prompt: str = ""
    partial_images: int = 0
    stream: bool = False
    seed: int | None = None
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = ""
    style: str = ""
    workflow: str = "txt2img"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    text_tokens: int = 0
    image_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.text_tokens + other.text_tokens,
            self.image_tokens + other.image_tokens,
        )


@dataclass(frozen=True, slots=True)
class Queued:
    position: int  # jobs ahead of this one


@dataclass(frozen=True, slots=True)
class Progress:
    step: int
    total: int
    eta_s: float = -1.0
    image_index: int = 0


@dataclass(frozen=True, slots=True)
class Preview:
    data: bytes = field(repr=False)
    media_type: str
    image_index: int = 0


@dataclass(frozen=True, slots=True)
class Partial:
    data: bytes = field(repr=False)
    index: int


@dataclass(frozen=True, slots=True)
class Final:
    """One finished image. `usage`: what the provider billed for it, where it says per image."""

    data: bytes = field(repr=False)
    index: int
    seed: int | None = None
    revised_prompt: str = ""
    usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True)
class Billed:
    """The provider's usage for the whole request (a non-streamed GPT-image answer)."""

    usage: TokenUsage


Event = Queued | Progress | Preview | Partial | Final | Billed


class ContentRefused(Exception):
    """The provider's safety filter refused or blanked the image; the message says so."""


class ImageClient(Protocol):
    def run(self, job: Job) -> AsyncIterator[Event]:
        """The job's events, ending after the last Final. Closing the iterator early cancels
        the job on the provider (interrupt, removal from its queue)."""
        ...

    async def models(self) -> list[str]: ...

    async def aclose(self) -> None: ...
