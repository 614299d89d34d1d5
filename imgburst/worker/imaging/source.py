"""Opening untrusted images safely, and decoding no more of them than the recipe needs.

Safety, in the order it is checked: the size of the bytes; the format, by magic bytes
and by the Pillow plugins allowed to open it (never EPS, PSD, PDF or SVG: Pillow is told
exactly which plugins may try); the resolution, read from the header before any pixel
is decoded (a decompression bomb is refused, never decoded); the number of frames.
`LOAD_TRUNCATED_IMAGES` stays off, so a truncated file fails with a clear error.

Speed: for a JPEG, `draft` asks the decoder for a reduced DCT scale (1/2, 1/4, 1/8) that
is still at least as large as the biggest output needs.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from functools import lru_cache

import simplejpeg
from PIL import Image, ImageCms, UnidentifiedImageError

from imgburst.core.formats import HEIF_PLUGIN, sniff, unsupported_message
from imgburst.core.recipes import Crop, OutputSpec, Recipe, Resize, Rotate
from imgburst.worker.imaging.errors import ImageError, Limits
from imgburst.worker.imaging.geometry import resize_plan

# Our format name -> the Pillow plugins allowed to open it. JPEG's opener also opens MPO
# (multi-picture JPEG: Pillow registers no opener of its own for it, so naming "MPO" here
# would turn a corrupt JPEG header into a KeyError instead of "corrupt JPEG").
PLUGINS = {
    "jpeg": ["JPEG"], "png": ["PNG"], "webp": ["WEBP"], "gif": ["GIF"],
    "tiff": ["TIFF"], "bmp": ["BMP"], "avif": ["AVIF"], "heif": ["HEIF"],
}
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
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# Pillow's own bomb check is global and fixed; ours (`Limits.max_pixels`) is configurable
# and runs on every open, before decoding, with a message that gives the dimensions.
Image.MAX_IMAGE_PIXELS = None


def keep_freed_blocks(count: int) -> None:
    """Let Pillow keep up to `count` freed image-memory blocks (16 MB at most each) for the
    next image, as `PILLOW_BLOCKS_MAX` does. A worker decodes image after image of similar
    size; handing every buffer back to the kernel makes the next image fault its pages in
    again (on 12 MP JPEGs, most of the system time and ~10% of the wall time)."""
    Image.core.set_blocks_max(count)


if HEIF_PLUGIN:  # optional extra: `pip install 'imgburst[heif]'`
    from pillow_heif import register_heif_opener

    register_heif_opener()


@dataclass
class Source:
    """A decoded image: pixels at `image.size`, standing for `size` source pixels."""

    image: Image.Image
    size: tuple[int, int]
    format: str
    icc: bytes | None
    exif: Image.Exif | None


def open_image(data: bytes, limits: Limits | None = None,
               what: str = "image") -> tuple[Image.Image, str]:
    """Open (without decoding) and check size, format, resolution and frame count."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        raise ImageError(f"{what} too large: {len(data) / 1e6:.1f} MB, above the "
                         f"{limits.max_bytes / 1e6:.0f} MB limit")
    head = bytes(data[:64])
    fmt = sniff(head)
    if fmt is None:
        raise ImageError(unsupported_message(head))
    if fmt == "heif" and not HEIF_PLUGIN:
        raise ImageError("unsupported format: HEIF needs the pillow-heif package "
                         "(pip install 'imgburst[heif]')")
    try:
        img = Image.open(io.BytesIO(data), formats=PLUGINS[fmt])
    except UnidentifiedImageError:
        raise ImageError(f"corrupt {fmt.upper()}: its header can't be read") from None
    except DECODE_ERRORS as exc:
        raise ImageError(f"corrupt {fmt.upper()} header: {exc}") from None
    if fmt == "png":  # Pillow checks IDAT CRCs only in verify(): cheap, no decoding
        try:
            Image.open(io.BytesIO(data), formats=["PNG"]).verify()
        except DECODE_ERRORS as exc:
            raise ImageError(f"corrupt PNG: {exc}") from None
    w, h = img.size
    if w * h > limits.max_pixels:
        raise ImageError(f"{what} too large: {w}x{h} is {w * h / 1e6:.1f} MP, above the "
                         f"{limits.max_pixels / 1e6:g} MP limit")
    sizes = frame_sizes(data, fmt, img, limits.max_frames + 1)
    if len(sizes) > limits.max_frames:
        raise ImageError(f"too many frames: more than {limits.max_frames} (the first frame is "
                         "used, but the count is limited)")
    total = sum(fw * fh for fw, fh in sizes)
    if total > limits.max_total_pixels:
        raise ImageError(f"animation too large: its {len(sizes)} frames hold "
                         f"{total / 1e6:.1f} MP, above the {limits.max_total_pixels / 1e6:g} MP "
                         "limit for all frames together")
    return img, fmt


def frame_sizes(data: bytes, fmt: str, img: Image.Image, stop: int) -> list[tuple[int, int]]:
    """The size of each frame (at most `stop` of them), read from headers: no frame is
    decoded, so a frame bomb costs a walk over its bytes. A GIF's frames are read from
    its image descriptors (Pillow's seek decodes every frame to compose the next); other
    formats state their frame count in a header (APNG's acTL, WebP's ANIM chunks, TIFF's
    IFD chain), and each frame is taken at the canvas size."""
    if fmt == "gif":
        return gif_frame_sizes(data, stop) or [img.size]
    try:
        count = getattr(img, "n_frames", 1)
    except DECODE_ERRORS as exc:
        raise ImageError(f"corrupt animation: {exc}") from None
    return [img.size] * min(count, stop)


def gif_frame_sizes(data: bytes, stop: int) -> list[tuple[int, int]]:
    """A GIF's frame sizes from its image descriptors (GIF89a spec, section 20); the
    LZW data between them is skipped by its sub-block lengths, never decoded."""
    if len(data) < 13:
        return []
    pos = 13 + _colour_table(data[10])
    sizes: list[tuple[int, int]] = []
    while pos < len(data) and len(sizes) < stop:
        kind = data[pos]
        if kind == 0x21:  # an extension: its label, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif kind == 0x2C and pos + 10 <= len(data):  # an image descriptor
            width, height = struct.unpack_from("<HH", data, pos + 5)
            sizes.append((width, height))
            pos += 10 + _colour_table(data[pos + 9])
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
        else:  # the trailer (0x3B), or bytes that are no block: Pillow stops there too
            break
    return sizes


def _colour_table(flags: int) -> int:
    """Bytes of the colour table that a descriptor's packed flags announce."""
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while pos < len(data):
        length = data[pos]
        pos += 1 + length
        if length == 0:
            break
    return pos


def needed_scale(spec: OutputSpec, size: tuple[int, int]) -> float:
    """How much of the source resolution this output needs (1.0 = full decode).

    Walks the operations up to the first resize; only operations that don't depend on
    pixel density (`scale_free`) may come before it, or the full image is needed.
    """
    w, h = float(size[0]), float(size[1])
    for op in spec.ops:
        if isinstance(op, Resize):
            target, crop = resize_plan(op, (w, h))
            if op.enlarge or op.mode == "force":
                return 1.0
            return min(1.0, max(target[0] / crop[0], target[1] / crop[1]))
        if not op.scale_free:
            return 1.0
        if isinstance(op, Crop):
            w, h = w * float(op.width), h * float(op.height)
        elif isinstance(op, Rotate) and op.angle % 180:
            w, h = h, w
    return 1.0


def decode(data: bytes, recipe: Recipe, limits: Limits | None = None) -> Source:
    """Decode only as much as the recipe's largest output needs; oriented, in a mode
    every operation handles (RGB, RGBA, L, LA), with metadata kept aside."""
    img, fmt = open_image(data, limits or Limits())
    try:
        exif = img.getexif()
    except DECODE_ERRORS:
        exif = None
    orientation = exif.get(EXIF_ORIENTATION, 1) if exif is not None and recipe.auto_orient else 1
    if orientation not in ORIENT:
        orientation = 1
    raw_w, raw_h = img.size
    size = (raw_h, raw_w) if orientation in (5, 6, 7, 8) else (raw_w, raw_h)
    scale = max(needed_scale(spec, size) for spec in recipe.outputs)
    if fmt == "jpeg" and scale < 1:
        img.draft(img.mode, (math.ceil(raw_w * scale), math.ceil(raw_h * scale)))
    icc = img.info.get("icc_profile") or None
    try:
        img.load()
        for method in ORIENT.get(orientation, ()):
            img = img.transpose(method)
        img = normalize_mode(img, icc)
    except DECODE_ERRORS as exc:
        raise ImageError(f"truncated or corrupt image: {exc}") from None
    if fmt == "jpeg" and ends_early(data, img):
        raise ImageError("truncated JPEG: its data ends before the last rows of the picture "
                         "(libjpeg: premature end of data); upload the whole file again")
    if img.mode in ("RGB", "RGBA") and icc is not None and is_cmyk_profile(icc):
        icc = None  # the CMYK profile was used to convert; the pixels are sRGB now
    img.info = {}
    if exif is not None and orientation != 1:
        exif[EXIF_ORIENTATION] = 1
    return Source(image=img, size=size, format=fmt, icc=icc, exif=exif)


JPEG_FILL = 128  # libjpeg-turbo fills the blocks missing from a short scan with mid grey


def ends_early(data: bytes, img: Image.Image) -> bool:
    """Whether a decoded JPEG's data ended before its last rows (then closed by an EOI
    marker, so Pillow sees no error and the rows come out grey).

    libjpeg only warns (JWRN_HIT_MARKER), and Pillow drops warnings; simplejpeg's strict
    mode raises on them. A strict decode costs ~30 ms for 12 MP even at 1/8 scale, so it
    runs only when the bottom row is the exact mid grey libjpeg fills with."""
    bottom = img.crop((0, img.height - 1, img.width, img.height)).getextrema()
    bands = bottom if isinstance(bottom[0], tuple) else (bottom,)
    if any(band != (JPEG_FILL, JPEG_FILL) for band in bands[:3]):
        return False
    try:
        simplejpeg.decode_jpeg(bytes(data), strict=True, min_width=1, min_height=1)
    except ValueError as exc:
        return "premature end" in str(exc)
    return False


def normalize_mode(img: Image.Image, icc: bytes | None = None) -> Image.Image:
    """RGB, RGBA, L or LA: the modes every operation and encoder handles."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if mode == "CMYK":
        if icc is not None and is_cmyk_profile(icc):
            try:
                converted = ImageCms.profileToProfile(img, _profile(icc), SRGB, outputMode="RGB")
            except (ImageCms.PyCMSError, OSError):
                converted = None
            if converted is not None:  # None only when converting in place, never here
                return converted
        return img.convert("RGB")
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("PA", "RGBa", "RGBX"):
        return img.convert("RGBA" if mode != "RGBX" else "RGB")
    if mode == "La":
        return img.convert("LA")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":  # 16-bit and 32-bit grey: top 8 bits
        img = img if mode == "I" else img.convert("I")
        return img.point(lambda v: v / 256).convert("L")
    if mode == "F":
        return img.convert("L")
    return img.convert("RGBA" if "A" in img.getbands() else "RGB")


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=32)
def _profile(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def is_cmyk_profile(icc: bytes) -> bool:
    return icc[16:20] == b"CMYK"


@lru_cache(maxsize=32)
def _to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from the profile to sRGB; None when it is sRGB already or
    unusable (then the pixels are taken as sRGB, as browsers do)."""
    try:
        profile = _profile(icc)
        description = ImageCms.getProfileDescription(profile) or ""
        if "srgb" in description.lower() or icc[16:20] != b"RGB ":
            return None
        return ImageCms.buildTransform(profile, SRGB, mode, mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert colours from the source's profile to sRGB (a no-op for sRGB sources)."""
    if icc is None or img.mode not in ("RGB", "RGBA"):
        return img
    transform = _to_srgb(icc, img.mode)
    if transform is None:
        return img
    try:
        return ImageCms.applyTransform(img, transform) or img
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img
