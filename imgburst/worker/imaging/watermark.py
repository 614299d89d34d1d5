"""The watermark operation: an uploaded image or a line of text over the picture.

Asset images are untrusted input too: they are opened with the same checks as sources.
Text uses Pillow's built-in scalable font, so no font file has to be shipped.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from imgburst.core.recipes import ASSET_MAX_PIXELS, ASSET_MAX_SIDE, Watermark, anchor, rgba
from imgburst.worker.imaging.errors import ImageError
from imgburst.worker.imaging.frame import Env, Frame
from imgburst.worker.imaging.source import normalize_mode, open_image


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit(size: tuple[float, float], room: tuple[int, int]) -> float:
    """The factor (at most 1) that fits `size` into `room`."""
    return min(1.0, room[0] / max(1.0, size[0]), room[1] / max(1.0, size[1]))


def _text_mark(op: Watermark, width: int, room: tuple[int, int], env: Env) -> Image.Image:
    """The text, drawn at a font size that fits the room: the size is chosen from the
    text's measured box before any pixel is drawn (200 W at 1000 px would be a 180 MP
    bitmap, drawn only to be shrunk)."""
    assert op.text is not None
    size = op.size or max(10, round(width * 0.04))
    left, top, right, bottom = _font(size).getbbox(op.text)
    factor = _fit((right - left, bottom - top), room)
    if factor < 1:
        size = max(1, int(size * factor))
        left, top, right, bottom = _font(size).getbbox(op.text)
    box = (max(1, math.ceil(right - left)), max(1, math.ceil(bottom - top)))
    env.limits.check_output(*box, "watermark text")
    mark = Image.new("RGBA", box, (0, 0, 0, 0))
    ImageDraw.Draw(mark).text((-left, -top), op.text, font=_font(size), fill=rgba(op.colour))
    return mark


def _image_mark(op: Watermark, width: int, room: tuple[int, int], env: Env) -> Image.Image:
    """The asset, scaled once to its final size (`scale` of the picture's width, shrunk
    to fit the room). Assets are bounded at upload; an older, larger one is refused here."""
    assert op.image is not None
    data = env.assets.get(op.image)
    if data is None:
        raise ImageError(f"watermark asset {op.image!r} is missing; upload it with "
                         f"PUT /api/v1/assets/{op.image}")
    what = f"watermark asset {op.image!r}"
    limits = replace(env.limits, max_pixels=min(env.limits.max_pixels, ASSET_MAX_PIXELS))
    mark, _ = open_image(data, limits, what=what)
    if max(mark.size) > ASSET_MAX_SIDE:
        raise ImageError(f"{what} is {mark.width}x{mark.height}; an asset may be at most "
                         f"{ASSET_MAX_SIDE} px on each side")
    target_w = width * op.scale
    target_h = mark.height * target_w / mark.width
    factor = _fit((target_w, target_h), room)
    target = (max(1, round(target_w * factor)), max(1, round(target_h * factor)))
    env.limits.check_output(*target, "watermark")
    try:
        mark.load()
        mark = normalize_mode(mark).convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{what} is corrupt: {exc}") from None
    return mark.resize(target, Image.Resampling.LANCZOS)


def watermark(frame: Frame, op: Watermark, env: Env) -> Frame:
    img = frame.image
    room = (img.width - 2 * op.margin, img.height - 2 * op.margin)
    if room[0] < 1 or room[1] < 1:
        return frame
    mark = (_image_mark(op, img.width, room, env) if op.image
            else _text_mark(op, img.width, room, env))
    if op.opacity < 1:
        alpha = mark.getchannel("A").point(lambda v: round(v * op.opacity))
        mark.putalpha(alpha)
    if mark.width > room[0] or mark.height > room[1]:  # a font's box is not exactly linear
        factor = _fit(mark.size, room)
        mark = mark.resize((max(1, int(mark.width * factor)), max(1, int(mark.height * factor))),
                           Image.Resampling.LANCZOS)
    free_w = img.width - mark.width - 2 * op.margin
    free_h = img.height - mark.height - 2 * op.margin
    fx, fy = anchor(op.position) or (0.5, 0.5)
    at = (op.margin + round(max(0, free_w) * fx), op.margin + round(max(0, free_h) * fy))
    base = img.convert("RGBA")
    base.alpha_composite(mark, at)
    mode = img.mode if img.mode in ("RGB", "RGBA") else ("RGBA" if "A" in img.getbands() else "RGB")
    return frame.keep(base if mode == "RGBA" else base.convert(mode))
