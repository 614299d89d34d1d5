"""Image formats told apart by their first bytes (never by file name or content type).

The allowlist is what the worker's decoder is allowed to open. Everything else, and in
particular the formats image servers learned to fear (EPS and PDF run a PostScript
interpreter, SVG fetches and scripts, PSD is a large attack surface), is refused by name.
"""

from __future__ import annotations

import io
from importlib.util import find_spec

SNIFF_BYTES = 64
SUPPORTED = ("jpeg", "png", "webp", "gif", "tiff", "bmp", "avif", "heif")
HEIF_PLUGIN = find_spec("pillow_heif") is not None
AVIF_BRANDS = (b"avif", b"avis")
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
REFUSED = (  # magic bytes of formats we name when refusing them
    (b"%PDF", "PDF"), (b"%!PS", "PostScript/EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"), (b"PK\x03\x04", "ZIP"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)


def sniff(head: bytes) -> str | None:
    """The format whose magic bytes `head` starts with, or None if it is none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[4:8] == b"ftyp":
        size = int.from_bytes(head[:4], "big")
        brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(size, len(head)), 4)]
        if any(b in AVIF_BRANDS for b in brands):
            return "avif"
        if any(b in HEIF_BRANDS for b in brands):
            return "heif"
    return None


def describe(head: bytes) -> str | None:
    """The name of a refused format we recognise (for the error message), or None."""
    for magic, name in REFUSED:
        if head.startswith(magic):
            return name
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if text.startswith(b"<?xml"):
        return "XML"
    return None


def unsupported_message(head: bytes) -> str:
    """Why an input was refused, in words a user can act on."""
    if not head:
        return "unsupported format: the file is empty"
    allowed = ", ".join(f.upper() for f in SUPPORTED if f != "heif" or HEIF_PLUGIN)
    name = describe(head)
    what = f"{name} is not accepted" if name else "not a known image"
    return f"unsupported format: {what} (allowed: {allowed}; judged by content, not by name)"


def dimensions(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from the header of a `fmt` image (no pixel is decoded); None when
    the header can't be read. For the API's checks of admin uploads: images themselves
    are decoded only by workers."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as img:
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, KeyError):
        return None
