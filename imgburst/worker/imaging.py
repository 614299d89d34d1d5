"""Pure imaging: image bytes + recipe -> encoded outputs. No I/O, no Celery, no store.

Speed comes from decoding as little as possible: for a JPEG, Pillow's `draft` asks the
decoder for a reduced DCT scale (1/2, 1/4, 1/8) that is still at least as large as the
biggest output needs, so a 12 MP photo is never fully decoded to make a 1024 px preview;
then `resize(..., reducing_gap=...)` does a cheap box reduction before the LANCZOS pass.
Each operation of `core.recipes` maps to one small function here (`APPLY`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from imgburst.core.recipes import Grayscale, Op, OutputSpec, Recipe, Resize

DEFAULT_MAX_PIXELS = 50_000_000
REDUCING_GAP = 3.0
READABLE = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "BMP"}  # Pillow format names
ORIENT = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}
EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """The input can't be turned into outputs (unreadable, unsupported, too large)."""


@dataclass(frozen=True)
class Rendered:
    name: str
    format: str
    width: int
    height: int
    data: bytes


def _resize(img: Image.Image, op: Resize) -> Image.Image:
    w, h = img.size
    box_w = op.width or math.inf
    box_h = op.height or math.inf
    if op.mode == "fill":
        assert op.width and op.height
        target_ratio = op.width / op.height
        if w / h > target_ratio:  # too wide: crop the sides
            crop_w = h * target_ratio
            box = ((w - crop_w) / 2, 0, (w + crop_w) / 2, h)
        else:  # too tall: crop top and bottom
            crop_h = w / target_ratio
            box = (0, (h - crop_h) / 2, w, (h + crop_h) / 2)
        return img.resize((op.width, op.height), Image.Resampling.LANCZOS, box=box,
                          reducing_gap=REDUCING_GAP)
    scale = min(box_w / w, box_h / h)
    if scale >= 1 and not op.enlarge:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _grayscale(img: Image.Image, _op: Grayscale) -> Image.Image:
    return img.convert("LA" if "A" in img.getbands() else "L")


APPLY: dict[type[Op], Callable[[Image.Image, Op], Image.Image]] = {
    Resize: _resize,  # type: ignore[dict-item]
    Grayscale: _grayscale,  # type: ignore[dict-item]
}


def _needed_scale(spec: OutputSpec, size: tuple[int, int]) -> float:
    """How much of the source resolution this output needs (1.0 = full decode)."""
    w, h = size
    for op in spec.ops:
        if isinstance(op, Resize):
            if op.enlarge:
                return 1.0
            if op.mode == "fill":
                assert op.width and op.height
                return min(1.0, max(op.width / w, op.height / h))
            return min(1.0, (op.width or math.inf) / w, (op.height or math.inf) / h)
    return 1.0


def _normalize_mode(img: Image.Image) -> Image.Image:
    """RGB, RGBA, L or LA: modes every operation and encoder handles."""
    if img.mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey: keep the top 8 bits
        return (img if img.mode == "I" else img.convert("I")).point(lambda v: v / 256).convert("L")
    return img.convert("RGBA" if "A" in img.getbands() else "RGB")


def _encode(img: Image.Image, spec: OutputSpec) -> bytes:
    out = io.BytesIO()
    if spec.format == "jpeg":
        if "A" in img.getbands():
            background = Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img.convert("RGBA"), mask=img.getchannel("A"))
            img = background
        elif img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        img.save(out, "JPEG", quality=spec.quality)
    elif spec.format == "webp":
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        img.save(out, "WEBP", quality=spec.quality, method=4)
    else:
        img.save(out, "PNG", compress_level=6)
    return out.getvalue()


def open_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (without decoding) and check format and resolution from the header."""
    if not data:
        raise ImageError("unsupported format: the file is empty")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError("unsupported format: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt image header: {exc}") from None
    if img.format not in READABLE:
        raise ImageError(f"unsupported format: {img.format}")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"image too large: {w}x{h} is {w * h / 1e6:.1f} MP, above the "
                         f"{max_pixels / 1e6:.0f} MP limit")
    return img


def decode(data: bytes, recipe: Recipe, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode only as much as the recipe's largest output needs; oriented, metadata dropped."""
    img = open_image(data, max_pixels)
    orientation = img.getexif().get(EXIF_ORIENTATION, 1) if recipe.auto_orient else 1
    raw_w, raw_h = img.size
    oriented = (raw_h, raw_w) if orientation in (5, 6, 7, 8) else (raw_w, raw_h)
    scale = max(_needed_scale(spec, oriented) for spec in recipe.outputs)
    if img.format in ("JPEG", "MPO") and scale < 1:
        img.draft(img.mode, (math.ceil(raw_w * scale), math.ceil(raw_h * scale)))
    try:
        img.load()
        for method in ORIENT.get(orientation, ()):
            img = img.transpose(method)
        img = _normalize_mode(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"truncated or corrupt image: {exc}") from None
    img.info = {}  # strip metadata (EXIF, ICC, XMP, comments) from every output
    return img


def render(img: Image.Image, recipe: Recipe) -> list[Rendered]:
    """Apply each output's operations to the decoded image and encode it."""
    rendered = []
    for spec in recipe.outputs:
        out = img
        for op in spec.ops:
            out = APPLY[type(op)](out, op)
        rendered.append(Rendered(name=spec.name, format=spec.format, width=out.width,
                                 height=out.height, data=_encode(out, spec)))
    return rendered


def process(data: bytes, recipe: Recipe, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Rendered]:
    """Make every output of `recipe` from one image; raise `ImageError` for a bad image."""
    return render(decode(data, recipe, max_pixels), recipe)
