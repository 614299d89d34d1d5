"""Pure imaging: sizes, orientation, colours, formats, metadata, partial decode, bad input."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgburst.core.recipes import DEFAULT_RECIPE, parse_recipe
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.imaging import ImageError, decode, process


def recipe(*ops, fmt="png", auto_orient=True):
    return parse_recipe({"auto_orient": auto_orient,
                         "outputs": [{"name": "o", "format": fmt, "ops": list(ops)}]})


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def quadrants() -> Image.Image:
    """400x200: left half red, right half blue; top-left corner pixel green."""
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (200, 0, 400, 200))
    img.paste((0, 255, 0), (0, 0, 20, 20))
    return img


def only(results):
    (result,) = results
    return Image.open(io.BytesIO(result.data)), result


@pytest.mark.parametrize(("ops", "size"), [
    ([{"op": "resize", "width": 100, "height": 100}], (100, 50)),
    ([{"op": "resize", "width": 100}], (100, 50)),
    ([{"op": "resize", "height": 20}], (40, 20)),
    ([{"op": "resize", "width": 1000, "height": 1000}], (400, 200)),  # fit never enlarges
    ([{"op": "resize", "width": 1000, "enlarge": True}], (1000, 500)),
    ([{"op": "resize", "width": 100, "height": 100, "mode": "fill"}], (100, 100)),
    ([{"op": "resize", "width": 30, "height": 90, "mode": "fill"}], (30, 90)),
    ([], (400, 200)),
])
def test_resize_sizes(ops, size):
    img, result = only(process(encode(quadrants()), recipe(*ops)))
    assert img.size == size == (result.width, result.height)


def test_fill_crops_the_centre():
    img, _ = only(process(encode(quadrants()),
                          recipe({"op": "resize", "width": 100, "height": 100, "mode": "fill"})))
    # the centre square of a red|blue image is half red, half blue; the green corner is gone
    r, g, b = img.getpixel((10, 50))
    assert r > 200 and b < 50 and g < 50
    r, g, b = img.getpixel((90, 50))
    assert b > 200 and r < 50
    assert img.getpixel((2, 2))[1] < 50


def test_grayscale_and_alpha_kept_for_png():
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 128))
    img, _ = only(process(encode(rgba), recipe({"op": "grayscale"})))
    assert img.mode == "LA"
    lum, alpha = img.getpixel((5, 5))
    assert alpha == 128 and 70 < lum < 80  # ITU-R 601 luma of pure red is 76


def test_transparency_onto_jpeg_is_white():
    rgba = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    img, _ = only(process(encode(rgba), recipe(fmt="jpeg")))
    assert img.mode == "RGB" and min(img.getpixel((10, 10))) > 245


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_lands_upright(orientation):
    """A picture stored rotated/flipped with the tag that undoes it comes out as `quadrants`."""
    upright = quadrants()
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(undo[orientation]) if orientation in undo else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    img, _ = only(process(encode(stored, "JPEG", quality=95, exif=exif), recipe()))
    assert img.size == (400, 200)
    assert img.getpixel((5, 5))[1] > 200, "green corner must be top-left"
    assert img.getpixel((100, 100))[0] > 200 and img.getpixel((300, 100))[2] > 200


def test_auto_orient_off_keeps_stored_pixels():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(quadrants(), "JPEG", exif=exif)
    img, _ = only(process(data, recipe(auto_orient=False)))
    assert img.size == (400, 200)


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_output_formats_and_metadata_stripped(fmt, pil):
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0112] = 1
    data = encode(quadrants(), "JPEG", exif=exif, comment=b"secret gps")
    img, result = only(process(data, recipe({"op": "resize", "width": 64}, fmt=fmt)))
    assert img.format == pil and result.format == fmt
    assert not img.getexif() and "comment" not in img.info and "exif" not in img.info


def test_quality_changes_size():
    data = photo_bytes(3, 800, 600)
    low = process(data, parse_recipe({"outputs": [{"name": "o", "format": "jpeg", "quality": 20}]}))
    high = process(data, parse_recipe({"outputs": [{"name": "o", "format": "jpeg",
                                                    "quality": 95}]}))
    assert len(low[0].data) * 2 < len(high[0].data)


def test_12mp_jpeg_is_not_fully_decoded_for_the_default_recipe():
    data = photo_bytes(5, 4000, 3000)
    base = decode(data, DEFAULT_RECIPE)
    # 1024 px needs 1/2 scale (1/4 would give 1000 px, too small): decoded at 2000x1500
    assert base.image.size == (2000, 1500) and base.size == (4000, 3000)
    thumb_only = parse_recipe({"outputs": [DEFAULT_RECIPE.outputs[0].to_dict()]})
    assert decode(data, thumb_only).image.size == (500, 375)  # 1/8 is enough for 256 px
    sizes = {r.name: (r.width, r.height) for r in process(data, DEFAULT_RECIPE)}
    assert sizes == {"thumb": (256, 192), "medium": (1024, 768)}


def test_modes_become_correct_rgb():
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red in CMYK
    img, _ = only(process(encode(cmyk, "JPEG", quality=95), recipe(fmt="png")))
    r, g, b = img.getpixel((5, 5))[:3]
    assert img.mode == "RGB" and r > 200 and g < 60 and b < 60
    palette = Image.new("P", (20, 20), 0)
    palette.putpalette([0, 0, 255] * 256)
    palette.info["transparency"] = 0
    img, _ = only(process(encode(palette), recipe(fmt="png")))
    assert img.mode == "RGBA" and img.getpixel((1, 1))[3] == 0
    deep = Image.new("I;16", (20, 20), 65535)
    img, _ = only(process(encode(deep), recipe(fmt="png")))
    assert img.getpixel((1, 1)) == 255


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (b"hello world, not an image", "unsupported format"),
    (b"<html><body>hi</body></html>", "unsupported format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n", "unsupported format"),
])
def test_bad_inputs_raise_image_error(data, words):
    with pytest.raises(ImageError, match=words):
        process(data, DEFAULT_RECIPE)


def test_truncated_jpeg_fails_cleanly():
    data = photo_bytes(4, 640, 480)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        process(data[: len(data) // 2], DEFAULT_RECIPE)


def test_resolution_limit_checked_before_decoding():
    big = encode(Image.new("L", (9000, 9000)), "PNG")  # 81 MP, compresses to a few KB
    with pytest.raises(ImageError, match="above the 50 MP limit"):
        process(big, DEFAULT_RECIPE)


def test_smaller_outputs_made_from_larger_ones_keep_exact_geometry():
    """The thumbnail is resampled from the 1024 px output; its size must still be what
    the source's own geometry gives (odd sizes round the same way)."""
    data = photo_bytes(11, 1201, 901, "PNG")
    sizes = {r.name: (r.width, r.height) for r in process(data, DEFAULT_RECIPE)}
    assert sizes == {"thumb": (256, 192), "medium": (1024, 768)}


@pytest.mark.parametrize("blocks", [0, 4])
def test_a_worker_process_reuses_image_memory_between_jobs(tmp_path, monkeypatch, blocks):
    """A pool process keeps IMGBURST_WORKER_IMAGE_BLOCKS freed blocks: the next photo's
    decode reuses the last one's memory instead of faulting fresh pages in (0: never)."""
    from imgburst.core.settings import Settings
    from imgburst.worker import tasks

    monkeypatch.setattr(tasks, "_runtime", None)
    settings = Settings.from_env({"IMGBURST_HOME": str(tmp_path),
                                  "IMGBURST_WORKER_IMAGE_BLOCKS": str(blocks),
                                  "IMGBURST_WORKER_MAX_MEMORY_MB": "0"})  # not pytest's
    try:
        tasks.prepare_process(settings)
        assert Image.core.get_blocks_max() == blocks
        Image.core.reset_stats()
        for seed in (1, 2):
            process(photo_bytes(seed, 2400, 1800), DEFAULT_RECIPE)
        reused = Image.core.get_stats()["reused_blocks"]
        assert reused > 0 if blocks else reused == 0
    finally:
        Image.core.set_blocks_max(0)
        Image.core.clear_cache()
