"""Golden tests of every operation: output size, colours at known pixels, format.

The inputs are generated with known content (coloured quarters, a border of known
width, a single bright spot), so each assertion says what a correct engine must give.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgburst.core.recipes import OPS, parse_recipe
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.imaging import ImageError, Limits, process

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def quarters(w: int = 400, h: int = 200) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right yellow."""
    img = Image.new("RGB", (w, h), RED)
    img.paste(GREEN, (w // 2, 0, w, h // 2))
    img.paste(BLUE, (0, h // 2, w // 2, h))
    img.paste(YELLOW, (w // 2, h // 2, w, h))
    return img


def run(img: Image.Image | bytes, *ops: dict, fmt: str = "png", assets=None, **out):
    data = img if isinstance(img, bytes) else png(img)
    recipe = parse_recipe({"outputs": [{"name": "o", "format": fmt, "ops": list(ops), **out}]})
    (result,) = process(data, recipe, assets=assets)
    decoded = Image.open(io.BytesIO(result.data))
    assert decoded.size == (result.width, result.height)
    return decoded, result


def near(pixel, colour, tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def test_every_registered_operation_has_a_golden_test():
    tested = {"resize", "crop", "trim", "extend", "rotate", "flip", "flop", "grayscale",
              "blur", "sharpen", "brightness", "contrast", "saturation", "watermark"}
    assert set(OPS) == tested


@pytest.mark.parametrize(("params", "size"), [
    ({"width": 100, "height": 100, "mode": "fit"}, (100, 50)),
    ({"width": 100, "height": 100, "mode": "fill"}, (100, 100)),
    ({"width": 800, "height": 800, "mode": "fill"}, (800, 800)),  # fill always covers
    ({"width": 800, "height": 800, "mode": "fill-down"}, (200, 200)),  # never enlarges
    ({"width": 100, "height": 80, "mode": "fill-down"}, (100, 80)),
    ({"width": 100, "height": 100, "mode": "force"}, (100, 100)),
    ({"width": 100, "mode": "force"}, (100, 200)),
    ({"width": 800, "mode": "fit"}, (400, 200)),
    ({"width": 800, "mode": "fit", "enlarge": True}, (800, 400)),
    ({"width": 100, "height": 100, "dpr": 2}, (200, 100)),
    ({"width": 100, "height": 100, "mode": "fill", "dpr": 1.5}, (150, 150)),
])
def test_resize_modes(params, size):
    img, _ = run(quarters(), {"op": "resize", **params})
    assert img.size == size


def test_resize_force_stretches_and_fit_keeps_colours_in_place():
    img, _ = run(quarters(), {"op": "resize", "width": 100, "height": 100, "mode": "force"})
    assert near(img.getpixel((10, 10)), RED) and near(img.getpixel((90, 90)), YELLOW)
    img, _ = run(quarters(), {"op": "resize", "width": 200})
    assert near(img.getpixel((10, 10)), RED) and near(img.getpixel((190, 90)), YELLOW)


@pytest.mark.parametrize(("gravity", "left_colour", "right_colour"), [
    ("w", RED, RED), ("e", GREEN, GREEN), ("centre", RED, GREEN),
    ("fp:0.1:0.2", RED, RED), ("fp:0.9:0.2", GREEN, GREEN),
])
def test_fill_gravity_picks_the_crop(gravity, left_colour, right_colour):
    # 400x200 -> 100x100 fill: scale 0.5, the kept region is 200x200 of the source
    img, _ = run(quarters(), {"op": "resize", "width": 100, "height": 100, "mode": "fill",
                              "gravity": gravity})
    assert near(img.getpixel((5, 5)), left_colour)
    assert near(img.getpixel((94, 5)), right_colour)


def test_fill_gravity_north_and_south_on_a_tall_image():
    tall = quarters(200, 400)
    top, _ = run(tall, {"op": "resize", "width": 100, "height": 50, "mode": "fill",
                        "gravity": "n"})
    bottom, _ = run(tall, {"op": "resize", "width": 100, "height": 50, "mode": "fill",
                           "gravity": "s"})
    assert near(top.getpixel((5, 5)), RED) and near(bottom.getpixel((5, 45)), BLUE)


def test_smart_gravity_finds_the_detail():
    """A flat grey picture with a busy patch near the right edge: smart keeps the patch."""
    img = Image.new("RGB", (600, 200), (128, 128, 128))
    detail = Image.open(io.BytesIO(photo_bytes(1, 150, 150)))
    img.paste(detail, (430, 25))
    out, _ = run(img, {"op": "resize", "width": 200, "height": 200, "mode": "fill",
                       "gravity": "smart"})
    centre, _ = run(img, {"op": "resize", "width": 200, "height": 200, "mode": "fill"})
    assert out.convert("L").entropy() > centre.convert("L").entropy() + 1
    assert out.convert("L").getextrema() != (128, 128)


@pytest.mark.parametrize(("params", "size", "colour"), [
    ({"left": 0, "top": 0, "width": 100, "height": 50}, (100, 50), RED),
    ({"left": 250, "top": 150, "width": 100, "height": 50}, (100, 50), YELLOW),
    ({"left": 0.5, "top": 0.0, "width": 0.5, "height": 0.5}, (200, 100), GREEN),
    ({"width": 0.25, "height": 0.5, "gravity": "sw"}, (100, 100), BLUE),
    ({"left": 350, "top": 150, "width": 500, "height": 500}, (50, 50), YELLOW),  # clamped
])
def test_crop(params, size, colour):
    img, _ = run(quarters(), {"op": "crop", **params})
    assert img.size == size
    assert near(img.getpixel((size[0] // 2, size[1] // 2)), colour, 5)


def test_crop_outside_the_image_fails_its_job_clearly():
    with pytest.raises(ImageError, match="outside the 400x200 image"):
        run(quarters(), {"op": "crop", "left": 500, "top": 0, "width": 10, "height": 10})


def test_crop_in_fractions_before_resize_still_decodes_little():
    """Fractional crops don't depend on pixel density: a JPEG may still be drafted."""
    data = photo_bytes(7, 4000, 3000)
    img, result = run(data, {"op": "crop", "width": 0.5, "height": 0.5, "gravity": "ne"},
                      {"op": "resize", "width": 300}, fmt="jpeg")
    assert img.size == (300, 225)


def test_trim_removes_a_uniform_border_with_tolerance():
    img = Image.new("RGB", (300, 200), (250, 250, 250))
    img.paste((252, 248, 251), (0, 0, 300, 10))  # near-white noise in the border
    img.paste(BLUE, (40, 30, 240, 150))
    out, _ = run(img, {"op": "trim", "tolerance": 10})
    assert out.size == (200, 120) and near(out.getpixel((0, 0)), BLUE, 5)
    strict, _ = run(img, {"op": "trim", "tolerance": 0})
    assert strict.size == (300, 190)  # only the exact top-left colour is border
    coloured, _ = run(img, {"op": "trim", "colour": "#0000ff", "tolerance": 5})
    assert coloured.size == (300, 200)  # nothing around the image is blue


def test_extend_to_a_size_and_to_an_aspect():
    out, _ = run(quarters(), {"op": "extend", "width": 600, "height": 300,
                              "background": "#00ff00"})
    assert out.size == (600, 300)
    assert near(out.getpixel((5, 5)), GREEN, 0) and near(out.getpixel((300, 150)), YELLOW, 0)
    nw, _ = run(quarters(), {"op": "pad", "aspect": "1:1", "background": "black",
                             "gravity": "n"})
    assert nw.size == (400, 400)
    assert near(nw.getpixel((5, 5)), RED, 0) and near(nw.getpixel((5, 395)), (0, 0, 0), 0)
    transparent, _ = run(quarters(), {"op": "extend", "width": 500})
    assert transparent.mode == "RGBA" and transparent.getpixel((2, 100))[3] == 0
    same, _ = run(quarters(), {"op": "extend", "width": 100, "height": 100})
    assert same.size == (400, 200)  # never shrinks


def test_rotate_right_angles_exactly_and_any_angle_with_background():
    out, _ = run(quarters(), {"op": "rotate", "angle": 90})  # counter-clockwise
    assert out.size == (200, 400)
    assert near(out.getpixel((5, 5)), GREEN, 0) and near(out.getpixel((195, 395)), BLUE, 0)
    out, _ = run(quarters(), {"op": "rotate", "angle": 180})
    assert near(out.getpixel((5, 5)), YELLOW, 0)
    out, _ = run(quarters(), {"op": "rotate", "angle": -90})
    assert near(out.getpixel((5, 5)), BLUE, 0)
    tilted, _ = run(quarters(), {"op": "rotate", "angle": 30, "background": "#ff00ffff"},
                    fmt="jpeg")
    assert tilted.size[0] > 400 and tilted.size[1] > 300
    assert near(tilted.getpixel((2, 2)), (255, 0, 255))


def test_flip_and_flop():
    flipped, _ = run(quarters(), {"op": "flip"})
    assert near(flipped.getpixel((5, 5)), BLUE, 0)
    flopped, _ = run(quarters(), {"op": "flop"})
    assert near(flopped.getpixel((5, 5)), GREEN, 0)


def test_grayscale_keeps_alpha():
    rgba = Image.new("RGBA", (50, 40), (255, 0, 0, 128))
    out, _ = run(rgba, {"op": "grayscale"})
    assert out.mode == "LA"
    lum, alpha = out.getpixel((5, 5))
    assert alpha == 128 and 70 < lum < 80  # ITU-R 601 luma of pure red is 76


def test_blur_softens_an_edge_and_sharpen_steepens_it():
    img = Image.new("L", (100, 20), 0)
    img.paste(255, (50, 0, 100, 20))
    blurred, _ = run(img, {"op": "blur", "sigma": 4})
    assert 40 < blurred.getpixel((49, 10)) < 215 and blurred.getpixel((5, 10)) < 5
    soft = img.resize((25, 5), Image.Resampling.BILINEAR).resize((100, 20))
    sharp, _ = run(soft, {"op": "sharpen", "sigma": 2, "amount": 3})
    edge = [soft.getpixel((x, 10)) for x in range(40, 60)]
    sharp_edge = [sharp.getpixel((x, 10)) for x in range(40, 60)]
    assert max(b - a for a, b in zip(sharp_edge, sharp_edge[1:], strict=False)) > \
        max(b - a for a, b in zip(edge, edge[1:], strict=False))


def test_blur_leaves_alpha_alone():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (20, 0, 40, 40))
    out, _ = run(rgba, {"op": "blur", "sigma": 3})
    assert out.getpixel((30, 20))[3] == 0 and out.getpixel((10, 20))[3] == 255


@pytest.mark.parametrize(("op", "factor", "check"), [
    ("brightness", 0.0, lambda p: p[:3] == (0, 0, 0)),
    ("brightness", 2.0, lambda p: p[:3] == (255, 200, 100)),
    ("contrast", 0.0, lambda p: abs(p[0] - p[2]) < 3),  # flat: one mean grey
    ("saturation", 0.0, lambda p: abs(p[0] - p[1]) < 3 and abs(p[1] - p[2]) < 3),
    ("saturation", 1.0, lambda p: p[:3] == (200, 100, 50)),
])
def test_colour_adjustments(op, factor, check):
    img = Image.new("RGB", (20, 20), (200, 100, 50))
    out, _ = run(img, {"op": op, "factor": factor})
    assert check(out.getpixel((10, 10))), out.getpixel((10, 10))


def test_text_watermark_lands_at_its_corner_with_opacity():
    img = Image.new("RGB", (400, 300), (0, 0, 0))
    out, _ = run(img, {"op": "watermark", "text": "IMGBURST", "position": "se",
                       "margin": 10, "size": 40, "opacity": 1.0, "colour": "white"})
    bbox = out.convert("L").point(lambda v: 255 if v > 128 else 0).getbbox()
    assert bbox is not None and bbox[0] > 150 and bbox[1] > 230
    assert bbox[2] <= 390 and bbox[3] <= 290
    faint, _ = run(img, {"op": "watermark", "text": "IMGBURST", "position": "se",
                         "margin": 10, "size": 40, "opacity": 0.25, "colour": "white"})
    assert faint.convert("L").getextrema()[1] < 90  # 25% of white over black


def test_image_watermark_scaled_and_placed():
    logo = Image.new("RGBA", (100, 50), (255, 0, 0, 255))
    img = Image.new("RGB", (400, 300), (0, 0, 255))
    out, _ = run(img, {"op": "watermark", "image": "logo.png", "position": "nw", "margin": 0,
                       "scale": 0.5, "opacity": 1.0}, assets={"logo.png": png(logo)})
    assert near(out.getpixel((5, 5)), RED, 0) and near(out.getpixel((195, 95)), RED, 0)
    assert near(out.getpixel((205, 5)), BLUE, 0) and near(out.getpixel((5, 105)), BLUE, 0)
    with pytest.raises(ImageError, match="asset 'gone.png' is missing"):
        run(img, {"op": "watermark", "image": "gone.png"})
    with pytest.raises(ImageError, match="unsupported format"):
        run(img, {"op": "watermark", "image": "x.png"}, assets={"x.png": b"%PDF-1.4"})


def test_operations_compose_in_order():
    out, _ = run(quarters(), {"op": "crop", "width": 0.5, "height": 1.0, "gravity": "e"},
                 {"op": "rotate", "angle": 90}, {"op": "resize", "width": 50})
    # the right half (green over yellow), turned counter-clockwise: green left, yellow right
    assert out.size == (50, 50)
    assert near(out.getpixel((5, 25)), GREEN) and near(out.getpixel((45, 25)), YELLOW)


def test_oversized_result_is_refused_before_allocating():
    with pytest.raises(ImageError, match="above the 1 MP limit"):
        process(png(quarters()), parse_recipe({"outputs": [{"name": "o", "ops": [
            {"op": "resize", "width": 2000, "height": 2000, "mode": "force"}]}]}),
            Limits(max_pixels=1_000_000))
