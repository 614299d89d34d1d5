"""The watermark operation: an uploaded image or a line of text over the picture.

Asset images are untrusted input too: they are opened with the same checks as sources.
Text uses Pillow's built-in scalable font, so no font file has to be shipped.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from imgburst.core.recipes import Watermark, anchor, rgba
from imgburst.worker.imaging.errors import ImageError
from imgburst.worker.imaging.frame import Env, Frame
from imgburst.worker.imaging.source import normalize_mode, open_image


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_mark(op: Watermark, width: int) -> Image.Image:
    assert op.text is not None
    font = _font(op.size or max(10, round(width * 0.04)))
    left, top, right, bottom = font.getbbox(op.text)
    mark = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(mark).text((-left, -top), op.text, font=font, fill=rgba(op.colour))
    return mark


def _image_mark(op: Watermark, width: int, env: Env) -> Image.Image:
    assert op.image is not None
    data = env.assets.get(op.image)
    if data is None:
        raise ImageError(f"watermark asset {op.image!r} is missing; upload it with "
                         f"PUT /api/v1/assets/{op.image}")
    mark, _ = open_image(data, env.limits, what=f"watermark asset {op.image!r}")
    try:
        mark.load()
        mark = normalize_mode(mark).convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"watermark asset {op.image!r} is corrupt: {exc}") from None
    target_w = max(1, round(width * op.scale))
    target_h = max(1, round(mark.height * target_w / mark.width))
    return mark.resize((target_w, target_h), Image.Resampling.LANCZOS)


def watermark(frame: Frame, op: Watermark, env: Env) -> Frame:
    img = frame.image
    mark = _image_mark(op, img.width, env) if op.image else _text_mark(op, img.width)
    if op.opacity < 1:
        alpha = mark.getchannel("A").point(lambda v: round(v * op.opacity))
        mark.putalpha(alpha)
    free_w = img.width - mark.width - 2 * op.margin
    free_h = img.height - mark.height - 2 * op.margin
    if free_w < 0 or free_h < 0:  # too big for the picture: shrink it to fit the margins
        room_w, room_h = img.width - 2 * op.margin, img.height - 2 * op.margin
        if room_w < 1 or room_h < 1:
            return frame
        factor = min(room_w / mark.width, room_h / mark.height)
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
