"""Operations that move pixels: resize, crop, trim, extend, rotate, flip, flop.

`smart` gravity is entropy based (as libvips' `entropy` interesting mode): among
candidate windows along the axis that has room, keep the one whose grey-level histogram
carries the most information, preferring the centre on ties. Cheap (it runs on a copy at
most 128 px wide) and content-blind (no faces), which suits batch thumbnails.
"""

from __future__ import annotations

import math

from PIL import Image

from imgburst.core.recipes import Crop, Extend, Flip, Flop, Resize, Rotate, Trim, anchor, rgba
from imgburst.worker.imaging.errors import ImageError
from imgburst.worker.imaging.frame import Env, Frame

FILTERS = {
    "lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR, "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
REDUCING_GAP = 2.0
SMART_SIDE = 128
SMART_STEPS = 16


def resize_plan(op: Resize, size: tuple[float, float]) -> tuple[tuple[int, int],
                                                                 tuple[float, float]]:
    """(output size, size of the source region it shows) for `op` on a `size` image."""
    w, h = size
    bw, bh = op.box
    if op.mode == "force":
        target = (bw or round(w), bh or round(h))
        return (max(1, target[0]), max(1, target[1])), (w, h)
    if op.mode in ("fill", "fill-down"):
        assert bw is not None and bh is not None
        scale = max(bw / w, bh / h)
        crop = (min(w, bw / scale), min(h, bh / scale))
        if op.mode == "fill-down" and scale > 1 and not op.enlarge:
            return (max(1, round(crop[0])), max(1, round(crop[1]))), crop
        return (bw, bh), crop
    scale = min(bw / w if bw else math.inf, bh / h if bh else math.inf)
    if scale > 1 and not op.enlarge:
        scale = 1.0
    return (max(1, round(w * scale)), max(1, round(h * scale))), (w, h)


def place(frame: Frame, region: tuple[float, float], gravity: str) -> tuple[float, float]:
    """Top-left corner (source pixels) of a `region` laid on the frame at `gravity`."""
    free_w, free_h = frame.size[0] - region[0], frame.size[1] - region[1]
    fractions = anchor(gravity)
    if fractions is None:
        return smart_corner(frame, region)
    fx, fy = fractions
    if gravity.startswith("fp:"):  # centre the region on the focal point, inside the image
        left = min(max(fx * frame.size[0] - region[0] / 2, 0), free_w)
        top = min(max(fy * frame.size[1] - region[1] / 2, 0), free_h)
        return left, top
    return free_w * fx, free_h * fy


def smart_corner(frame: Frame, region: tuple[float, float]) -> tuple[float, float]:
    """The entropy-richest placement of `region` (source pixels) within the frame."""
    img = frame.image
    shrink = max(1, math.ceil(max(img.size) / SMART_SIDE))
    grey = img.convert("L").reduce(shrink) if shrink > 1 else img.convert("L")
    to_small = grey.width / frame.size[0]
    rw, rh = region[0] * to_small, region[1] * to_small
    free_w, free_h = grey.width - rw, grey.height - rh
    best = (-1.0, 0.0, 0.0, 0.0)
    for i in range(SMART_STEPS + 1):
        for j in range(SMART_STEPS + 1):
            if (free_w < 1 and i) or (free_h < 1 and j):
                continue
            x, y = max(0.0, free_w) * i / SMART_STEPS, max(0.0, free_h) * j / SMART_STEPS
            box = (round(x), round(y), max(round(x) + 1, round(x + rw)),
                   max(round(y) + 1, round(y + rh)))
            score = grey.crop(box).entropy()
            off_centre = abs(i / SMART_STEPS - 0.5) + abs(j / SMART_STEPS - 0.5)
            if score > best[0] + 1e-6 or (abs(score - best[0]) <= 1e-6 and off_centre < best[3]):
                best = (score, x, y, off_centre)
    return best[1] / to_small, best[2] / to_small


def _pixels(frame: Frame, box: tuple[float, float, float, float]
            ) -> tuple[float, float, float, float]:
    """A box in source pixels -> the same box in the frame's pixels, inside the image."""
    sx, sy = frame.image.width / frame.size[0], frame.image.height / frame.size[1]
    w, h = frame.image.size
    left, top, right, bottom = box
    return (min(max(left * sx, 0.0), w), min(max(top * sy, 0.0), h),
            min(max(right * sx, 0.0), w), min(max(bottom * sy, 0.0), h))


def resize(frame: Frame, op: Resize, env: Env) -> Frame:
    target, region = resize_plan(op, frame.size)
    env.limits.check_output(*target, "resize")
    img = frame.image
    left, top = place(frame, region, op.gravity) if region != frame.size else (0.0, 0.0)
    box = _pixels(frame, (left, top, left + region[0], top + region[1]))
    if target == img.size and box == (0, 0, img.width, img.height):
        return Frame.of(img)
    if op.mode == "fill-down" and target == (round(region[0]), round(region[1])) and \
            frame.scale == 1:
        return Frame.of(img.crop((round(box[0]), round(box[1]), round(box[2]), round(box[3]))))
    resample = FILTERS[op.filter]
    gap = REDUCING_GAP if resample != Image.Resampling.NEAREST else None
    return Frame.of(img.resize(target, resample, box=box, reducing_gap=gap))


def crop(frame: Frame, op: Crop, env: Env) -> Frame:
    w, h = frame.size

    def length(value: int | float, whole: float) -> float:
        return value * whole if isinstance(value, float) else float(value)

    cw, ch = min(length(op.width, w), w), min(length(op.height, h), h)
    if op.left is None or op.top is None:
        left, top = place(frame, (cw, ch), op.gravity)
    else:
        left, top = length(op.left, w), length(op.top, h)
    right, bottom = min(left + cw, w), min(top + ch, h)
    if right - left < 0.5 or bottom - top < 0.5:
        raise ImageError(f"crop box at ({left:g}, {top:g}) lies outside the "
                         f"{round(w)}x{round(h)} image")
    box = tuple(round(v) for v in _pixels(frame, (left, top, right, bottom)))
    box = (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))
    pixels = frame.image.crop(box)
    if frame.scale == 1:
        return Frame.of(pixels)
    return Frame(pixels, (right - left, bottom - top))


def trim(frame: Frame, op: Trim, env: Env) -> Frame:
    """One band at a time: the box of pixels that differ from the colour is the union of
    each band's box, so the peak is two single-band copies of the image (not five RGBA
    ones: 1 GB more at 50 MP)."""
    img = frame.image
    corner = img.crop((0, 0, 1, 1)).convert("RGBA").tobytes()  # one RGBA pixel: 4 bytes
    colour = rgba(op.colour) if op.colour else (corner[0], corner[1], corner[2], corner[3])
    bands = img.getbands()
    compared = {"L": ((0, 0), (0, 1), (0, 2)), "LA": ((0, 0), (0, 1), (0, 2), (1, 3))}.get(
        img.mode, tuple((i, i) for i in range(len(bands))))
    if "A" not in bands and abs(255 - colour[3]) > op.tolerance:
        return frame  # an opaque image differs from a see-through colour everywhere
    box: tuple[int, int, int, int] | None = None
    for band_index, colour_index in compared:
        target = colour[colour_index]
        differs = img.getchannel(band_index).point(
            lambda v, t=target: 255 if abs(v - t) > op.tolerance else 0)
        found = differs.getbbox()
        if found is not None:
            box = found if box is None else (min(box[0], found[0]), min(box[1], found[1]),
                                             max(box[2], found[2]), max(box[3], found[3]))
    if box is None or box == (0, 0, img.width, img.height):
        return frame
    return Frame.of(img.crop(box))


def _fill_mode(img: Image.Image, colour: tuple[int, int, int, int]) -> str:
    has_alpha = "A" in img.getbands() or colour[3] < 255
    if img.mode in ("L", "LA") and colour[0] == colour[1] == colour[2]:
        return "LA" if has_alpha else "L"
    return "RGBA" if has_alpha else "RGB"


def _colour_for(mode: str, colour: tuple[int, int, int, int]) -> tuple[int, ...] | int:
    if mode == "L":
        return colour[0]
    return {"LA": (colour[0], colour[3]), "RGB": colour[:3]}.get(mode, colour)


def extend(frame: Frame, op: Extend, env: Env) -> Frame:
    img = frame.image
    w, h = img.size
    if op.aspect is not None:
        wide = w / h < op.aspect
        width, height = (round(h * op.aspect), h) if wide else (w, round(w / op.aspect))
    else:
        width, height = max(w, op.width or w), max(h, op.height or h)
    width, height = max(w, width), max(h, height)
    if (width, height) == (w, h):
        return frame
    env.limits.check_output(width, height, "extend")
    colour = rgba(op.background)
    mode = _fill_mode(img, colour)
    canvas = Image.new(mode, (width, height), _colour_for(mode, colour))
    fx, fy = anchor(op.gravity) or (0.5, 0.5)
    at = (round((width - w) * fx), round((height - h) * fy))
    if "A" in mode:  # composite in RGBA so transparent pixels show the background
        canvas = canvas.convert("RGBA")
        canvas.alpha_composite(img.convert("RGBA"), at)
        return Frame.of(canvas.convert(mode))
    canvas.paste(img.convert(mode) if img.mode != mode else img, at)
    return Frame.of(canvas)


def rotate(frame: Frame, op: Rotate, env: Env) -> Frame:
    angle = op.angle % 360
    img = frame.image
    right = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_270}
    if angle == 0:
        return frame
    if angle in right:
        size = frame.size if angle == 180 else (frame.size[1], frame.size[0])
        return Frame(img.transpose(right[int(angle)]), size)
    radians = math.radians(angle)
    w, h = img.size
    out_w = abs(w * math.cos(radians)) + abs(h * math.sin(radians))
    out_h = abs(w * math.sin(radians)) + abs(h * math.cos(radians))
    env.limits.check_output(out_w, out_h, "rotate")
    colour = rgba(op.background)
    mode = _fill_mode(img, colour)
    source = img.convert(mode) if img.mode != mode else img
    return Frame.of(source.rotate(angle, Image.Resampling.BICUBIC, expand=True,
                                  fillcolor=_colour_for(mode, colour)))


def flip(frame: Frame, op: Flip, env: Env) -> Frame:
    return frame.keep(frame.image.transpose(Image.Transpose.FLIP_TOP_BOTTOM))


def flop(frame: Frame, op: Flop, env: Env) -> Frame:
    return frame.keep(frame.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
