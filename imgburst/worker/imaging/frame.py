"""The image an operation works on, and what an operation may use besides it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from PIL import Image

from imgburst.worker.imaging.errors import Limits


@dataclass(frozen=True)
class Frame:
    """Pixels, and the size in source pixels they stand for.

    After a JPEG draft decode (or when an output starts from a larger output already
    made) the pixels are fewer than the source's: `size` keeps the source's geometry so
    every operation computes the same result as from a full decode.
    """

    image: Image.Image
    size: tuple[float, float]

    @classmethod
    def of(cls, image: Image.Image) -> Frame:
        return cls(image, (float(image.width), float(image.height)))

    @property
    def scale(self) -> float:
        """Pixels per source pixel (1.0 after the first resize)."""
        return self.image.width / self.size[0]

    def keep(self, image: Image.Image) -> Frame:
        """The same geometry with new pixels (for operations that don't move pixels)."""
        return Frame(image, self.size)


@dataclass(frozen=True)
class Env:
    """What operations may use besides the image: limits, and uploaded assets by name."""

    limits: Limits = field(default_factory=Limits)
    assets: Mapping[str, bytes] = field(default_factory=dict)
