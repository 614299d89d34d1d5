"""A corpus of hostile and awkward inputs, generated (nothing binary is checked in).

Each entry: (file name, bytes, expected error words or None when it must succeed).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from PIL import Image, ImageCms

from imgburst.core.synthetic import photo_bytes


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = 30000) -> bytes:
    """A real decompression bomb: a 1-bit side x side PNG of zeros (~100 KB on disk)."""
    row = b"\x00" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def png_broken_crc() -> bytes:
    data = bytearray(_save(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    data[idat + 4 + length] ^= 0xFF  # flip a byte of the IDAT chunk's CRC
    return bytes(data)


def gif_frames(count: int) -> bytes:
    frames = [Image.new("P", (32, 32), i % 250) for i in range(count)]
    for i, frame in enumerate(frames):
        frame.putpixel((i % 32, i // 32 % 32), 255)  # different frames are not merged
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:])


def gif_frame_bomb(frames: int = 30, side: int = 3500) -> bytes:
    """A GIF that claims `frames` frames of `side` x `side` (12 MP each) in a few hundred
    bytes: each frame's LZW data is a clear code and an end code, nothing else."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", side, side, 0x80, 0, 0) + b"\x00" * 6
    frame = (struct.pack("<BHHHHB", 0x2C, 0, 0, side, side, 0)
             + b"\x02\x02\x44\x01\x00")  # min code size 2; one sub-block: clear, end
    return screen + frame * frames + b"\x3b"


def jpeg_ending_early() -> bytes:
    """A photo whose scan stops halfway, closed by an end-of-image marker: libjpeg fills
    the missing rows with grey and only warns."""
    data = photo_bytes(3, 1600, 1200)
    return data[:len(data) // 2] + b"\xff\xd9"


def cmyk_jpeg() -> bytes:
    return _save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def png16() -> bytes:
    return _save(Image.new("I;16", (40, 30), 65535), "PNG")


def palette_transparent() -> bytes:
    img = Image.new("P", (40, 30), 0)
    img.putpalette([0, 0, 255] * 256)
    img.paste(1, (20, 0, 40, 30))
    return _save(img, "PNG", transparency=0)


def la_png() -> bytes:
    return _save(Image.new("LA", (40, 30), (200, 128)), "PNG")


def oriented(orientation: int) -> bytes:
    return photo_bytes(orientation, 320, 240, "JPEG", exif_orientation=orientation)


def mpo() -> bytes:
    """A multi-picture JPEG (a stereo camera's): JPEG's opener hands it over as MPO."""
    left, right = Image.new("RGB", (64, 48), (250, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 250))
    return _save(left, "MPO", save_all=True, append_images=[right])


def adobe_rgb_jpeg() -> bytes:
    """A JPEG tagged with a non-sRGB (Lab-based) profile, to exercise the conversion."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    return _save(Image.new("RGB", (32, 32), (120, 60, 200)), "JPEG",
                 icc_profile=profile.tobytes())


BAD: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty.jpg", lambda: b"", "the file is empty"),
    ("notes.jpg", lambda: b"just some text, not an image\n" * 4, "not a known image"),
    ("page.png", lambda: b"<!DOCTYPE html><html><body>hi</body></html>", "HTML is not accepted"),
    ("truncated.jpg", lambda: photo_bytes(3, 640, 480)[:6000], "truncated or corrupt"),
    ("header.jpg", lambda: b"\xff\xd8\xff" + b"x" * 100, "corrupt JPEG"),
    ("crc.png", png_broken_crc, "corrupt"),
    ("bomb.png", png_bomb, "30000x30000 is 900.0 MP, above the 50 MP limit"),
    ("frames.gif", lambda: gif_frames(200), "too many frames"),
    ("frame-bomb.gif", gif_frame_bomb, "animation too large: its 30 frames hold 367.5 MP"),
    ("ends-early.jpg", jpeg_ending_early, "truncated JPEG: its data ends before the last rows"),
    ("print.eps", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
     "PostScript/EPS is not accepted"),
    ("logo.svg", lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
     "SVG is not accepted"),
    ("doc.pdf", lambda: b"%PDF-1.7\n1 0 obj<<>>endobj\n", "PDF is not accepted"),
    ("layers.psd", lambda: b"8BPS\x00\x01" + b"\x00" * 40, "PSD is not accepted"),
]

GOOD: list[tuple[str, Callable[[], bytes]]] = [
    ("tiny.png", lambda: _save(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")),
    ("cmyk.jpg", cmyk_jpeg),
    ("deep.png", png16),
    ("palette.png", palette_transparent),
    ("grey-alpha.png", la_png),
    ("few-frames.gif", lambda: gif_frames(5)),
    ("profiled.jpg", adobe_rgb_jpeg),
    ("stereo.mpo", mpo),
    ("photo.avif", lambda: _save(Image.open(io.BytesIO(photo_bytes(12, 320, 240))), "AVIF")),
    ("photo.tiff", lambda: photo_bytes(13, 320, 240, "TIFF")),
    *[(f"orient-{n}.jpg", lambda n=n: oriented(n)) for n in range(1, 9)],
]
