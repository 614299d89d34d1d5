"""What the load generator submits: a weighted mix of synthetic photos, or your own.

`--mix 12MP:jpeg=3,2MP:png=1` means three 12 MP JPEGs for every 2 MP PNG. Synthetic
photos are generated deterministically from a seed (the same run twice sends the same
bytes) and cached on disk, so a second run starts at once.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from imgburst.cli.api_client import IMAGE_SUFFIXES, images_under
from imgburst.core.synthetic import photo_bytes

FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
VARIANTS = 6  # distinct photos per mix entry


class WorkloadError(ValueError):
    """A workload option is malformed; the message says which and how to write it."""


@dataclass(frozen=True)
class MixEntry:
    megapixels: float
    format: str
    weight: float

    @property
    def size(self) -> tuple[int, int]:
        """4:3 at this many megapixels."""
        height = round((self.megapixels * 1e6 * 3 / 4) ** 0.5)
        return max(1, round(height * 4 / 3)), max(1, height)


def parse_mix(text: str) -> list[MixEntry]:
    entries = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*([0-9.]+)MP:([a-z]+)(?:=([0-9.]+))?\s*", part, re.IGNORECASE)
        if not match or match[2].lower() not in FORMATS:
            raise WorkloadError(f"mix entry {part.strip()!r} must look like SIZEMP:FORMAT=WEIGHT "
                                "with FORMAT jpeg, png or webp, e.g. 12MP:jpeg=3")
        megapixels, weight = float(match[1]), float(match[3] or 1)
        if not 0.01 <= megapixels <= 50 or weight <= 0:
            raise WorkloadError(f"mix entry {part.strip()!r}: size must be 0.01..50 MP and the "
                                "weight above 0")
        entries.append(MixEntry(megapixels, FORMATS[match[2].lower()], weight))
    return entries


class Workload:
    """Picks the images of each batch: from the mix (weighted, seeded) or a directory."""

    def __init__(self, images: list[tuple[str, Path]], weights: list[float], seed: int) -> None:
        self.images = images
        self.weights = weights
        self.random = random.Random(seed)
        self.cache: dict[Path, bytes] = {}

    @classmethod
    def from_mix(cls, mix: list[MixEntry], cache_dir: Path, seed: int = 0) -> Workload:
        cache_dir.mkdir(parents=True, exist_ok=True)
        images, weights = [], []
        for entry in mix:
            w, h = entry.size
            for variant in range(VARIANTS):
                path = cache_dir / f"{w}x{h}-{seed + variant}.{EXTENSIONS[entry.format]}"
                if not path.exists():
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(photo_bytes(seed + variant, w, h, entry.format))
                    tmp.replace(path)
                images.append((path.name, path))
                weights.append(entry.weight / VARIANTS)
        return cls(images, weights, seed)

    @classmethod
    def from_directory(cls, directory: Path, seed: int = 0) -> Workload:
        files = images_under(directory)
        if not files:
            raise WorkloadError(f"no images ({' '.join(IMAGE_SUFFIXES)}; hidden files are "
                                f"skipped) under {directory}")
        return cls([(p.relative_to(directory).as_posix(), p) for p in files], [1.0] * len(files),
                   seed)

    def batch(self, size: int) -> list[tuple[str, bytes]]:
        picked = self.random.choices(range(len(self.images)), weights=self.weights, k=size)
        out = []
        for i in picked:
            name, path = self.images[i]
            if path not in self.cache:
                self.cache[path] = path.read_bytes()
            out.append((name, self.cache[path]))
        return out
