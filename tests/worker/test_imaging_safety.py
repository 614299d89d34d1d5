"""Untrusted input: every bad file fails with its own message, awkward ones come out right.

The same corpus goes through the API and real workers in `test_api_imaging.py`; here the
engine is checked alone, including what it must not do (decode a bomb, open EPS).
"""

from __future__ import annotations

import io
import resource
import time

import pytest
from corpus import BAD, GOOD, cmyk_jpeg, gif_frames, la_png, palette_transparent, png16, png_bomb
from PIL import Image

from imgburst.core.formats import sniff
from imgburst.core.recipes import DEFAULT_RECIPE, parse_recipe
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.imaging import ImageError, Limits, open_image, process
from imgburst.worker.imaging.source import PLUGINS

PNG_OUT = parse_recipe({"outputs": [{"name": "o", "format": "png"}]})


@pytest.mark.parametrize(("name", "make", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_fail_with_their_own_message(name, make, words):
    with pytest.raises(ImageError) as info:
        process(make(), DEFAULT_RECIPE)
    assert words in str(info.value)


@pytest.mark.parametrize(("name", "make"), GOOD, ids=[g[0] for g in GOOD])
def test_awkward_but_valid_inputs_succeed(name, make):
    outputs = process(make(), DEFAULT_RECIPE)
    for out in outputs:
        img = Image.open(io.BytesIO(out.data))
        assert img.mode in ("RGB", "RGBA", "L", "LA")
        assert (img.width, img.height) == (out.width, out.height)


def test_bomb_is_refused_from_its_header_without_decoding():
    bomb = png_bomb()
    assert len(bomb) < 300_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageError, match="900.0 MP"):
        process(bomb, DEFAULT_RECIPE)
    assert time.perf_counter() - started < 0.5
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 50  # decoding it would need 900 MB


def test_limits_are_configurable():
    data = photo_bytes(1, 400, 300)
    process(data, DEFAULT_RECIPE, Limits(max_pixels=120_000))
    with pytest.raises(ImageError, match="above the 0.1 MP limit"):
        process(data, DEFAULT_RECIPE, Limits(max_pixels=100_000))
    with pytest.raises(ImageError, match="above the 0 MB limit"):
        process(data, DEFAULT_RECIPE, Limits(max_bytes=1000))
    process(gif_frames(200), DEFAULT_RECIPE, Limits(max_frames=200))


def test_animation_keeps_only_the_first_frame():
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    (result,) = process(out.getvalue(), parse_recipe({"outputs": [
        {"name": "o", "format": "gif"}]}))
    img = Image.open(io.BytesIO(result.data))
    assert getattr(img, "n_frames", 1) == 1
    assert img.convert("RGB").getpixel((5, 5))[0] > 200


def test_pillow_is_never_asked_to_open_what_we_refuse():
    """Even if a refused format slipped past the sniffer, Pillow may only try our plugins."""
    allowed = {p for plugins in PLUGINS.values() for p in plugins}
    assert not allowed & {"EPS", "PSD", "PDF", "SVG", "XBM", "XPM", "ICNS", "FITS", "MIC"}
    assert sniff(b"%!PS-Adobe-3.0") is None
    with pytest.raises(ImageError, match="unsupported format"):
        open_image(b"%!PS-Adobe-3.0 EPSF-3.0\n" + b"\x00" * 100)


def test_cmyk_16bit_palette_and_la_come_out_right():
    (cmyk,) = process(cmyk_jpeg(), PNG_OUT)
    r, g, b = Image.open(io.BytesIO(cmyk.data)).getpixel((5, 5))[:3]
    assert r > 200 and g < 60 and b < 60
    deep = Image.open(io.BytesIO(process(png16(), PNG_OUT)[0].data))
    assert deep.mode == "L" and deep.getpixel((1, 1)) == 255
    pal = Image.open(io.BytesIO(process(palette_transparent(), PNG_OUT)[0].data))
    assert pal.mode == "RGBA" and pal.getpixel((5, 5))[3] == 0
    assert pal.getpixel((30, 5)) == (0, 0, 255, 255)
    la = Image.open(io.BytesIO(process(la_png(), PNG_OUT)[0].data))
    assert la.mode == "LA" and la.getpixel((3, 3)) == (200, 128)


def test_a_corrupt_scan_after_a_valid_header_fails_cleanly_or_decodes():
    """Garbage in the entropy-coded data: libjpeg may recover or stop; either way only an
    ImageError may come out (anything else would fail this test)."""
    data = bytearray(photo_bytes(9, 800, 600))
    middle = len(data) // 2
    data[middle:middle + 2000] = b"\xff\xd9" * 1000  # end-of-image markers in the scan
    try:
        process(bytes(data), DEFAULT_RECIPE)
    except ImageError as exc:
        assert "corrupt" in str(exc) or "truncated" in str(exc)


def test_heif_is_recognised_and_refused_clearly_without_its_plugin(monkeypatch):
    from imgburst.worker.imaging import source

    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    assert sniff(heic) == "heif"
    monkeypatch.setattr(source, "HEIF_PLUGIN", False)
    with pytest.raises(ImageError, match="HEIF needs the pillow-heif package"):
        process(heic, DEFAULT_RECIPE)


def test_frames_are_counted_from_headers_not_decoded():
    """30 frames of 12 MP: decoding each to count them took seconds of CPU."""
    from corpus import gif_frame_bomb

    bomb = gif_frame_bomb(frames=3, side=3500)  # under every bound: counted, then opened
    started = time.process_time()
    img, _ = open_image(bomb, Limits())
    assert img.tell() == 0 and time.process_time() - started < 0.05
    with pytest.raises(ImageError, match=r"its 3 frames hold 36.8 MP, above the 30 MP"):
        open_image(bomb, Limits(max_total_pixels=30_000_000))
    started = time.process_time()
    with pytest.raises(ImageError, match="too many frames"):
        open_image(gif_frame_bomb(frames=5000, side=3500), Limits())
    assert time.process_time() - started < 0.05


def _largest_new_image(monkeypatch) -> list[int]:
    """Record the pixels of every image the watermark module creates."""
    from imgburst.worker.imaging import watermark

    sizes: list[int] = []
    real_new = watermark.Image.new

    def new(mode, size, *args, **kwargs):
        sizes.append(size[0] * size[1])
        return real_new(mode, size, *args, **kwargs)

    monkeypatch.setattr(watermark.Image, "new", new)
    return sizes


def test_a_text_mark_is_sized_to_fit_before_it_is_drawn(monkeypatch):
    """200 W at 1000 px would be a 180 MP bitmap; the font is shrunk first instead."""
    sizes = _largest_new_image(monkeypatch)
    recipe = parse_recipe({"outputs": [{"name": "o", "format": "png", "ops": [
        {"op": "watermark", "text": "W" * 200, "size": 1000}]}]})
    (out,) = process(photo_bytes(1, 1000, 1000), recipe)
    assert (out.width, out.height) == (1000, 1000)
    assert sizes and max(sizes) <= 1000 * 1000, sizes


def test_an_asset_is_bounded_on_each_side_and_scaled_once():
    recipe = parse_recipe({"outputs": [{"name": "o", "format": "png", "ops": [
        {"op": "watermark", "image": "tall.png", "scale": 1}]}]})
    tall = _png(Image.new("L", (10, 20_000), 200))  # 0.2 MP, but 20,000 px high
    with pytest.raises(ImageError, match="10x20000; an asset may be at most 4096 px"):
        process(photo_bytes(1, 400, 300), recipe, assets={"tall.png": tall})
    logo = _png(Image.new("RGBA", (4000, 4000), (255, 0, 0, 255)))
    (out,) = process(photo_bytes(1, 400, 300), recipe, assets={"tall.png": logo})
    assert (out.width, out.height) == (400, 300)


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
