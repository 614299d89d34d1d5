"""Encoding an output: picking the format (`auto`), colour profile and metadata, and
`max_bytes` (the highest quality that fits, found by bisection)."""

from __future__ import annotations

import io

from PIL import Image

from imgburst.core.recipes import AUTO_PREFERENCE, OutputSpec, rgba
from imgburst.worker.imaging.errors import ImageError
from imgburst.worker.imaging.source import Source, to_srgb

LOSSY = ("jpeg", "webp", "avif")
MIN_QUALITY = 10
KEEP_AS_IS = ("jpeg", "png", "webp", "avif", "gif")


def accepted(accept: str) -> set[str]:
    """Image formats an `Accept` header names explicitly (wildcards don't count)."""
    formats = set()
    for part in accept.split(","):
        media, *params = part.strip().split(";")
        if any(_refused(param) for param in params):
            continue
        if media.strip().lower().startswith("image/") and "*" not in media:
            formats.add(media.strip().lower()[6:])
    return formats


def _refused(param: str) -> bool:
    key, _, value = param.strip().partition("=")
    try:
        return key.strip() == "q" and float(value) == 0
    except ValueError:
        return False


def choose_format(spec: OutputSpec, source: Source, has_alpha: bool,
                  accept: str | None = None) -> str:
    """The format to encode: as asked, or for `auto` the first preferred format the
    client accepts (synchronous requests) or the first preferred one (batches), else
    the source's format (TIFF, BMP and HEIF become PNG with alpha, JPEG without)."""
    if spec.format != "auto":
        return spec.format
    preference = spec.prefer or AUTO_PREFERENCE
    if accept is not None:
        formats = accepted(accept)
        for fmt in preference:
            if fmt in formats:
                return fmt
    elif spec.prefer:
        return spec.prefer[0]
    if source.format in KEEP_AS_IS:
        return source.format
    return "png" if has_alpha else "jpeg"


def _flatten(img: Image.Image, background: str) -> Image.Image:
    """Alpha onto the background colour: for formats without transparency."""
    if "A" not in img.getbands():
        return img if img.mode in ("RGB", "L") else img.convert("RGB")
    colour = rgba(background)[:3]
    base = Image.new("RGB", img.size, colour)
    base.paste(img.convert("RGBA"), mask=img.getchannel("A"))
    return base


def _save(img: Image.Image, fmt: str, spec: OutputSpec, quality: int,
          extra: dict[str, object]) -> bytes:
    out = io.BytesIO()
    if fmt == "jpeg":
        img.save(out, "JPEG", quality=quality, progressive=spec.progressive, **extra)
    elif fmt == "webp":
        if spec.lossless:
            img.save(out, "WEBP", lossless=True, quality=100, method=4, **extra)
        else:
            img.save(out, "WEBP", quality=quality, method=4, **extra)
    elif fmt == "avif":
        img.save(out, "AVIF", quality=quality, speed=spec.speed, **extra)
    elif fmt == "png":
        img.save(out, "PNG", compress_level=spec.compression, **extra)
    else:
        img.save(out, "GIF", **extra)
    return out.getvalue()


def _prepare(img: Image.Image, fmt: str, spec: OutputSpec) -> Image.Image:
    """The image in a mode `fmt` can store."""
    if fmt == "jpeg":
        return _flatten(img, spec.background)
    if fmt in ("webp", "avif"):
        return img if img.mode in ("RGB", "RGBA") else img.convert(
            "RGBA" if "A" in img.getbands() else "RGB")
    if fmt == "gif" and "A" in img.getbands():
        return _gif_with_transparency(img, spec.colors)
    if fmt == "gif" or (fmt == "png" and spec.palette):
        if "A" in img.getbands():  # PNG keeps per-entry alpha (tRNS)
            return img.convert("RGBA").quantize(spec.colors, Image.Quantize.FASTOCTREE)
        return img.convert("RGB").quantize(spec.colors, Image.Quantize.MEDIANCUT)
    return img


def _gif_with_transparency(img: Image.Image, colors: int) -> Image.Image:
    """GIF has one fully transparent palette entry: quantize the colours into the rest,
    then point every mostly-transparent pixel at it."""
    rgba = img.convert("RGBA")
    paletted = rgba.convert("RGB").quantize(max(1, colors - 1), Image.Quantize.MEDIANCUT)
    clear = len(paletted.getpalette() or []) // 3
    palette = (paletted.getpalette() or []) + [0, 0, 0]
    paletted.putpalette(palette)
    paletted.paste(clear, mask=rgba.getchannel("A").point(lambda a: 255 if a < 128 else 0))
    paletted.info["transparency"] = clear
    return paletted


def encode(img: Image.Image, spec: OutputSpec, source: Source,
           accept: str | None = None) -> tuple[str, bytes]:
    """(format, bytes) of one output."""
    fmt = choose_format(spec, source, "A" in img.getbands(), accept)
    extra: dict[str, object] = {}
    if spec.keep_icc and source.icc is not None and fmt != "gif":
        extra["icc_profile"] = source.icc
    else:
        img = to_srgb(img, source.icc)
    if spec.keep_exif and source.exif is not None and fmt != "gif":
        extra["exif"] = source.exif.tobytes()
    img = _prepare(img, fmt, spec)
    # Encoders also write info's icc_profile and exif: only what `extra` says may be written
    # (a colour conversion leaves the sRGB profile there).
    img.info = {k: v for k, v in img.info.items() if k == "transparency"}
    quality = spec.quality_for(fmt)
    data = _save(img, fmt, spec, quality, extra)
    if spec.max_bytes is None or len(data) <= spec.max_bytes or fmt not in LOSSY or (
            fmt == "webp" and spec.lossless):
        if spec.max_bytes is not None and len(data) > spec.max_bytes:
            raise ImageError(f"output {spec.name!r}: {len(data)} bytes as lossless {fmt}, above "
                             f"max_bytes {spec.max_bytes}; use a lossy format or a smaller size")
        return fmt, data
    low, high, best = MIN_QUALITY, quality - 1, None
    while low <= high:  # the highest quality whose bytes fit
        mid = (low + high) // 2
        attempt = _save(img, fmt, spec, mid, extra)
        if len(attempt) <= spec.max_bytes:
            best, low = attempt, mid + 1
        else:
            high = mid - 1
    if best is None:
        raise ImageError(f"output {spec.name!r} does not fit max_bytes {spec.max_bytes} even "
                         f"at quality {MIN_QUALITY}; resize it smaller or raise max_bytes")
    return fmt, best
