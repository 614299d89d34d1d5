"""Output encoding: every format and its options, `auto`, `max_bytes`, colour profiles,
metadata and the background that transparency becomes."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from imgburst.core.recipes import parse_recipe
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.imaging import ImageError, process


def one(data: bytes, accept: str | None = None, **output):
    recipe = parse_recipe({"outputs": [{"name": "o", **output}]})
    (result,) = process(data, recipe, accept=accept)
    return Image.open(io.BytesIO(result.data)), result


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


PHOTO = photo_bytes(21, 640, 480)


@pytest.mark.parametrize(("output", "pil"), [
    ({"format": "jpeg", "quality": 70}, "JPEG"),
    ({"format": "png", "compression": 9}, "PNG"),
    ({"format": "webp", "quality": 60}, "WEBP"),
    ({"format": "avif", "quality": 50, "speed": 9}, "AVIF"),
    ({"format": "gif"}, "GIF"),
])
def test_each_format_decodes_as_itself(output, pil):
    img, result = one(PHOTO, **output)
    assert img.format == pil and result.format == output["format"]
    assert img.size == (640, 480)


def test_jpeg_progressive_flag():
    img, _ = one(PHOTO, format="jpeg", progressive=True)
    assert img.info.get("progressive") or img.info.get("progression")
    plain, _ = one(PHOTO, format="jpeg")
    assert not (plain.info.get("progressive") or plain.info.get("progression"))


def test_png_palette_and_webp_lossless():
    pal, _ = one(PHOTO, format="png", palette=True, colors=16)
    assert pal.mode == "P" and len(pal.getcolors(256)) <= 16
    flat = encoded(Image.new("RGB", (64, 64), (12, 34, 56)), "PNG")
    lossless, _ = one(flat, format="webp", lossless=True)
    assert lossless.convert("RGB").getpixel((10, 10)) == (12, 34, 56)


def test_gif_output_keeps_transparency():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (20, 0, 40, 40))
    img, _ = one(encoded(rgba, "PNG"), format="gif")
    rgba_out = img.convert("RGBA")
    assert rgba_out.getpixel((30, 5))[3] == 0 and rgba_out.getpixel((5, 5))[:3] == (255, 0, 0)


def test_transparency_onto_jpeg_uses_the_recipe_background():
    clear = encoded(Image.new("RGBA", (30, 30), (0, 0, 0, 0)), "PNG")
    white, _ = one(clear, format="jpeg")
    assert min(white.getpixel((5, 5))) > 245
    orange, _ = one(clear, format="jpeg", background="#ff8000")
    r, g, b = orange.getpixel((5, 5))
    assert r > 240 and 110 < g < 145 and b < 15


@pytest.mark.parametrize(("source", "accept", "prefer", "expected"), [
    (PHOTO, "image/avif,image/webp,*/*", None, "avif"),
    (PHOTO, "image/webp,image/*;q=0.8", None, "webp"),
    (PHOTO, "image/avif;q=0,image/webp", None, "webp"),
    (PHOTO, "*/*", None, "jpeg"),
    (PHOTO, None, ["webp"], "webp"),
    (PHOTO, None, None, "jpeg"),
    (encoded(Image.new("RGB", (20, 20)), "PNG"), None, None, "png"),
    (encoded(Image.new("RGB", (20, 20)), "BMP"), None, None, "jpeg"),
    (encoded(Image.new("RGBA", (20, 20)), "TIFF"), None, None, "png"),
    (PHOTO, "image/png", ["avif", "png"], "png"),
])
def test_auto_format(source, accept, prefer, expected):
    output = {"format": "auto"} | ({"prefer": prefer} if prefer else {})
    img, result = one(source, accept=accept, **output)
    assert result.format == expected and img.format == expected.upper()


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_max_bytes_lowers_quality_until_it_fits(fmt):
    _, unbounded = one(PHOTO, format=fmt, quality=95)
    limit = len(unbounded.data) // 3
    _, bounded = one(PHOTO, format=fmt, quality=95, max_bytes=limit)
    assert len(bounded.data) <= limit
    _, lower = one(PHOTO, format=fmt, quality=95, max_bytes=limit // 2)
    assert len(lower.data) <= limit // 2 < len(bounded.data)  # the highest fitting quality


def test_max_bytes_that_cannot_be_met_fails_clearly():
    with pytest.raises(ImageError, match="does not fit max_bytes 100"):
        one(PHOTO, format="jpeg", max_bytes=100)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def swapped_rgb_profile() -> bytes:
    """An ICC v2 RGB matrix profile: sRGB's primaries with red and green swapped, gamma
    2.2. A pixel that is red in this space is green in sRGB: conversion shows."""
    text = b"swapped primaries test"
    desc = (b"desc" + b"\0" * 4 + struct.pack(">I", len(text) + 1) + text + b"\0"
            + b"\0" * 8 + b"\0" * 3 + b"\0" * 67)
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _xyz(0.3851, 0.7169, 0.0971)), (b"gXYZ", _xyz(0.4361, 0.2225, 0.0139)),
            (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"\0" * 4 + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 24 + b"\0" * 4 + _s15(0.9642) + _s15(1.0)
              + _s15(0.8249) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def test_icc_profile_converted_to_srgb_by_default_or_kept():
    profile = swapped_rgb_profile()
    data = encoded(Image.new("RGB", (32, 32), (220, 20, 20)), "PNG", icc_profile=profile)
    converted, _ = one(data, format="png")
    r, g, b = converted.getpixel((5, 5))
    assert g > 150 and r < 100, (r, g, b)  # "red" in the swapped space is green in sRGB
    assert "icc_profile" not in converted.info
    kept, _ = one(data, format="png", keep_icc=True)
    assert kept.info.get("icc_profile") == profile
    assert kept.getpixel((5, 5)) == (220, 20, 20)


def test_metadata_stripped_unless_kept():
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0112] = 6
    data = encoded(Image.open(io.BytesIO(PHOTO)), "JPEG", exif=exif, comment=b"gps")
    stripped, _ = one(data, format="jpeg")
    assert not stripped.getexif() and "comment" not in stripped.info
    kept, _ = one(data, format="jpeg", keep_exif=True)
    assert kept.getexif()[0x010F] == "CameraMaker"
    assert kept.getexif()[0x0112] == 1  # already applied: the viewer must not rotate again
    assert kept.size == (480, 640)
