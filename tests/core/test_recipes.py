"""Recipe validation: the whole recipe is checked and every rejection names its field."""

from __future__ import annotations

import pytest

from imgburst.core.recipes import (
    DEFAULT_RECIPE,
    DEFAULT_RECIPE_JSON,
    Grayscale,
    RecipeError,
    Resize,
    parse_recipe,
)

RESIZE = {"op": "resize", "width": 100, "height": 100}


def test_default_recipe_is_thumb_webp_and_medium_jpeg():
    thumb, medium = DEFAULT_RECIPE.outputs
    assert (thumb.name, thumb.format, thumb.ops) == ("thumb", "webp", (Resize(256, 256),))
    assert (medium.name, medium.format, medium.ops) == ("medium", "jpeg", (Resize(1024, 1024),))
    assert DEFAULT_RECIPE.auto_orient is True


def test_round_trip_through_json():
    raw = {"auto_orient": False, "outputs": [
        {"name": "sq", "format": "jpg", "quality": 70,
         "ops": [{"op": "resize", "width": 50, "height": 60, "mode": "fill"},
                 {"op": "grayscale"}]}]}
    recipe = parse_recipe(raw)
    assert recipe.outputs[0].format == "jpeg"
    assert recipe.outputs[0].ops == (Resize(50, 60, "fill"), Grayscale())
    assert parse_recipe(recipe.to_dict()) == recipe
    assert parse_recipe(DEFAULT_RECIPE_JSON).to_dict() == DEFAULT_RECIPE.to_dict()


def out(**kw):
    return {"name": "a", "format": "png", "ops": [RESIZE]} | kw


@pytest.mark.parametrize(("raw", "field", "words"), [
    ([], "recipe", "must be an object"),
    ({}, "outputs", "non-empty list"),
    ({"outputs": []}, "outputs", "non-empty list"),
    ({"outputs": [out()], "colour": 1}, "colour", "not a known parameter"),
    ({"outputs": [out()], "auto_orient": "yes"}, "auto_orient", "true or false"),
    ({"outputs": [out(), out(ops=[{"op": "resize", "width": 0}])]},
     "outputs[1].ops[0].width", "must be 1..10000"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 10001}])]},
     "outputs[0].ops[0].width", "must be 1..10000"),
    ({"outputs": [out(ops=[{"op": "resize", "width": True}])]},
     "outputs[0].ops[0].width", "must be 1..10000"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 10.5}])]},
     "outputs[0].ops[0].width", "must be 1..10000"),
    ({"outputs": [out(ops=[{"op": "resize"}])]}, "outputs[0].ops[0].width", "or height"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 5, "mode": "fill"}])]},
     "outputs[0].ops[0].height", "required with mode fill"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 5, "mode": "stretch"}])]},
     "outputs[0].ops[0].mode", "fit, fill"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 5, "depth": 3}])]},
     "outputs[0].ops[0].depth", "not a known parameter"),
    ({"outputs": [out(ops=[{"op": "sepia"}])]}, "outputs[0].ops[0].op", "must be one of"),
    ({"outputs": [out(ops=["resize"])]}, "outputs[0].ops[0]", "must be an object"),
    ({"outputs": [out(ops={"op": "grayscale"})]}, "outputs[0].ops", "must be a list"),
    ({"outputs": [out(ops=[{"op": "grayscale", "amount": 1}])]},
     "outputs[0].ops[0].amount", "not a known parameter"),
    ({"outputs": [out(format="heic")]}, "outputs[0].format", "jpeg, png, webp"),
    ({"outputs": [out(format="jpeg", quality=0)]}, "outputs[0].quality", "must be 1..100"),
    ({"outputs": [out(quality=50)]}, "outputs[0].quality", "does not apply to png"),
    ({"outputs": [out(format="webp", progressive=True)]}, "outputs[0].progressive",
     "only to jpeg"),
    ({"outputs": [out(format="auto", prefer=["bmp"])]}, "outputs[0].prefer",
     "avif, webp, jpeg, png"),
    ({"outputs": [out(background="mauve-ish")]}, "outputs[0].background", "not a colour"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 5, "gravity": "up"}])]},
     "outputs[0].ops[0].gravity", "smart"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 5, "gravity": "fp:2:0"}])]},
     "outputs[0].ops[0].gravity", "x and y in 0..1"),
    ({"outputs": [out(ops=[{"op": "resize", "width": 4000, "dpr": 3}])]},
     "outputs[0].ops[0].dpr", "above 10000"),
    ({"outputs": [out(ops=[{"op": "crop", "width": 10}])]}, "outputs[0].ops[0].height",
     "required for crop"),
    ({"outputs": [out(ops=[{"op": "crop", "width": 1.5, "height": 2}])]},
     "outputs[0].ops[0].width", "fraction"),
    ({"outputs": [out(ops=[{"op": "crop", "width": 5, "height": 5, "left": 2}])]},
     "outputs[0].ops[0].top", "required with left"),
    ({"outputs": [out(ops=[{"op": "extend", "width": 5, "aspect": "1:1"}])]},
     "outputs[0].ops[0].width", "not both"),
    ({"outputs": [out(ops=[{"op": "extend", "aspect": "16x9"}])]},
     "outputs[0].ops[0].aspect", "16:9"),
    ({"outputs": [out(ops=[{"op": "rotate"}])]}, "outputs[0].ops[0].angle", "required"),
    ({"outputs": [out(ops=[{"op": "blur", "sigma": 0}])]}, "outputs[0].ops[0].sigma",
     "0.1..100"),
    ({"outputs": [out(ops=[{"op": "brightness", "factor": -1}])]},
     "outputs[0].ops[0].factor", "0..10"),
    ({"outputs": [out(ops=[{"op": "watermark"}])]}, "outputs[0].ops[0].image", "or text"),
    ({"outputs": [out(ops=[{"op": "watermark", "image": "../etc/passwd"}])]},
     "outputs[0].ops[0].image", "asset name"),
    ({"outputs": [out(ops=[{"op": "watermark", "text": "a\x00b"}])]},
     "outputs[0].ops[0].text", "control characters"),
    ({"outputs": [out(name="Thumb")]}, "outputs[0].name", "lowercase"),
    ({"outputs": [out(name="../x")]}, "outputs[0].name", "lowercase"),
    ({"outputs": [out(), out()]}, "outputs[1].name", "unique"),
    ({"outputs": [out(extra=1)]}, "outputs[0].extra", "not a known parameter"),
    ({"outputs": [out()] * 17}, "outputs", "at most 16"),
    ({"outputs": [out(ops=[{"op": "grayscale"}] * 21)]}, "outputs[0].ops", "at most 20"),
])
def test_rejections_name_the_field(raw, field, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe(raw)
    assert info.value.field == field
    assert str(info.value) == f"{field} {info.value.message}" and words in info.value.message
