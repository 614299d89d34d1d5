"""Photo-like test images, the same for the same seed (benchmarks, demo spikes, tests).

Smooth colour fields plus mid-scale structure plus fine grain: it compresses and decodes
like a photograph (a flat colour would make JPEG decoding unrealistically cheap).
"""

from __future__ import annotations

import io
import random

from PIL import Image


def photo(seed: int, width: int, height: int) -> Image.Image:
    rnd = random.Random(seed)

    def noise(w: int, h: int, mode: str = "RGB") -> Image.Image:
        bands = len(mode)
        return Image.frombytes(mode, (w, h), rnd.randbytes(w * h * bands))

    coarse = noise(8, 6).resize((width, height), Image.Resampling.BICUBIC)
    middle = noise(max(2, width // 64), max(2, height // 64)).resize(
        (width, height), Image.Resampling.BILINEAR)
    grain = noise(width, height, "L").convert("RGB")
    return Image.blend(Image.blend(coarse, middle, 0.3), grain, 0.12)


def photo_bytes(seed: int, width: int, height: int, fmt: str = "JPEG", quality: int = 90,
                exif_orientation: int | None = None) -> bytes:
    """Encoded `photo(...)`; optionally tagged with an EXIF orientation (JPEG, WebP, TIFF)."""
    img = photo(seed, width, height)
    if fmt in ("PNG", "WEBP", "GIF") and seed % 2:
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
    if fmt == "GIF":
        img = img.convert("P")
    out = io.BytesIO()
    kwargs: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    img.save(out, fmt, **kwargs)
    return out.getvalue()
