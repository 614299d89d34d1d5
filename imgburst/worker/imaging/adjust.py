"""Operations that change colours, not geometry: grayscale, blur, sharpen, brightness,
contrast, saturation. Alpha is kept as it is."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageEnhance, ImageFilter

from imgburst.core.recipes import Blur, Brightness, Grayscale, Sharpen
from imgburst.worker.imaging.frame import Env, Frame


def _on_colour(img: Image.Image, change: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply `change` to the colour bands only, so alpha is never blurred or dimmed."""
    if "A" not in img.getbands():
        return change(img)
    colour_mode = "L" if img.mode == "LA" else "RGB"
    alpha = img.getchannel("A")
    changed = change(img.convert(colour_mode))
    changed.putalpha(alpha)
    return changed


def grayscale(frame: Frame, op: Grayscale, env: Env) -> Frame:
    img = frame.image
    return frame.keep(img.convert("LA" if "A" in img.getbands() else "L"))


def blur(frame: Frame, op: Blur, env: Env) -> Frame:
    radius = op.sigma * frame.scale
    return frame.keep(_on_colour(frame.image, lambda i: i.filter(ImageFilter.GaussianBlur(radius))))


def sharpen(frame: Frame, op: Sharpen, env: Env) -> Frame:
    mask = ImageFilter.UnsharpMask(radius=op.sigma * frame.scale, percent=round(op.amount * 100),
                                   threshold=op.threshold)
    return frame.keep(_on_colour(frame.image, lambda i: i.filter(mask)))


def _enhance(kind: Callable[[Image.Image], ImageEnhance._Enhance]
             ) -> Callable[[Frame, Brightness, Env], Frame]:
    def apply(frame: Frame, op: Brightness, env: Env) -> Frame:
        if op.factor == 1:
            return frame
        return frame.keep(_on_colour(frame.image, lambda i: kind(i).enhance(op.factor)))

    return apply


brightness = _enhance(ImageEnhance.Brightness)
contrast = _enhance(ImageEnhance.Contrast)
saturation = _enhance(ImageEnhance.Color)
