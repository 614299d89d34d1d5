"""What every imaging module shares: the error a bad image raises, and the limits."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_PIXELS = 50_000_000
ANIMATION_SOURCES = 4  # all frames of an animation together: this many sources' pixels


class ImageError(ValueError):
    """The input can't be turned into outputs (unreadable, unsupported, too large): the
    job fails with this message, and the batch and the worker go on."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one image may cost: checked from headers before decoding."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_frames: int = 100
    max_bytes: int = 50 << 20
    max_total_pixels: int = ANIMATION_SOURCES * DEFAULT_MAX_PIXELS
    """All frames of an animation together (only the first is decoded; the rest are
    bounded so that a file can't claim 100 frames of 50 MP)."""

    def check_output(self, width: float, height: float, what: str) -> None:
        """Refuse an operation that would allocate more pixels than a source may have."""
        if width * height > self.max_pixels:
            raise ImageError(f"{what} would make a {round(width)}x{round(height)} image, "
                             f"above the {self.max_pixels / 1e6:g} MP limit")
