"""Property tests: no recipe the validator accepts crashes the engine, and every
rejection names a field that exists in the recipe.

Recipes are drawn from the operations' own parameter declarations (so a new operation
is covered without touching this file), then mutated to produce invalid ones.
"""

from __future__ import annotations

import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgburst.core.recipes import OPS, OutputSpec, RecipeError, parse_recipe
from imgburst.core.recipes.fields import (
    Aspect,
    Bool,
    Choice,
    ChoiceList,
    Colour,
    Extent,
    Gravity,
    Int,
    Number,
    Param,
    Text,
)
from imgburst.core.recipes.recipe import FORMAT_OPTIONS
from imgburst.worker.imaging import ImageError, Limits, process

SMALL = 300  # keep sizes small so hundreds of examples run in seconds


def _source(mode: str, size: tuple[int, int]) -> bytes:
    img = Image.new(mode, size, (40, 120, 200, 180)[: len(mode)] if mode != "L" else 90)
    img.paste((250,) * len(mode) if mode != "L" else 250, (0, 0, size[0] // 3, size[1] // 2))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


SOURCES = [_source("RGB", (120, 80)), _source("RGBA", (64, 96)), _source("L", (33, 7)),
           _source("RGB", (1, 1)), _source("RGBA", (301, 227))]
ASSETS = {"logo.png": _source("RGBA", (40, 20))}


def value_for(param: Param) -> st.SearchStrategy[Any]:
    """Valid values of a parameter type (sizes kept small)."""
    if isinstance(param, Int):
        return st.integers(param.low, min(param.high, max(param.low, SMALL)))
    if isinstance(param, Number):
        return st.floats(param.low, min(param.high, 8.0), allow_nan=False)
    if isinstance(param, Bool):
        return st.booleans()
    if isinstance(param, Choice):
        return st.sampled_from(param.choices)
    if isinstance(param, ChoiceList):
        return st.lists(st.sampled_from(param.choices), min_size=1, unique=True)
    if isinstance(param, Colour):
        return st.sampled_from(["#fff", "#00000080", "red", "#12345678", "transparent"])
    if isinstance(param, Gravity):
        words = [w for w in param.words() if w != "fp:x:y"]
        fp = st.tuples(st.floats(0, 1), st.floats(0, 1)).map(lambda p: f"fp:{p[0]}:{p[1]}")
        return st.one_of(st.sampled_from(words), fp) if param.focal else st.sampled_from(words)
    if isinstance(param, Extent):
        low = 0 if param.zero else 1
        return st.one_of(st.integers(low, SMALL), st.floats(0.01, 1.0))
    if isinstance(param, Aspect):
        return st.one_of(st.sampled_from(["16:9", "1:1", "3:4"]), st.floats(0.2, 5))
    if isinstance(param, Text):
        if param.pattern:
            return st.sampled_from(["logo.png"])
        return st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1,
                       max_size=12)
    raise AssertionError(f"no strategy for {param!r}")


@st.composite
def ops(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(OPS)))
    cls = OPS[name]
    keys = draw(st.sets(st.sampled_from(sorted(cls.params)))) if cls.params else set()
    op: dict[str, Any] = {"op": name}
    for key in set(keys) | set(cls.required):
        op[key] = draw(value_for(cls.params[key]))
    return op


@st.composite
def outputs(draw: st.DrawFn, index: int) -> dict[str, Any]:
    fmt = draw(st.sampled_from(sorted(FORMAT_OPTIONS)))
    out: dict[str, Any] = {"name": f"out{index}", "format": fmt,
                           "ops": draw(st.lists(ops(), max_size=4))}
    for key in draw(st.sets(st.sampled_from(FORMAT_OPTIONS[fmt] + ("background",)))):
        out[key] = draw(value_for(OutputSpec.params[key]))
    return out


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    return {"auto_orient": draw(st.booleans()),
            "outputs": [draw(outputs(i)) for i in range(count)]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=recipes(), source=st.sampled_from(SOURCES))
def test_accepted_recipes_never_crash_the_engine(raw, source):
    try:
        recipe = parse_recipe(raw)
    except RecipeError as exc:  # valid parts can still combine into an invalid recipe
        assert exc.field
        return
    try:
        rendered = process(source, recipe, Limits(max_pixels=4_000_000), ASSETS)
    except ImageError as exc:  # a clear, per-job failure is allowed; anything else is a bug
        assert str(exc)
        return
    assert [r.name for r in rendered] == [o.name for o in recipe.outputs]
    for out in rendered:
        img = Image.open(io.BytesIO(out.data))
        assert img.size == (out.width, out.height) and out.width >= 1 and out.height >= 1


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 20000), st.floats(allow_nan=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def resolve(raw: Any, field: str) -> bool:
    """Whether `field` (`outputs[1].ops[0].width`) points into `raw` or its parent."""
    node = raw
    parts = field.replace("[", ".[").split(".")
    for i, part in enumerate(p for p in parts if p):
        last = i == len([p for p in parts if p]) - 1
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, list) or index >= len(node):
                return False
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return last and isinstance(node, dict)  # a missing required key is named too
    return True


@st.composite
def broken(draw: st.DrawFn) -> dict[str, Any]:
    """A valid recipe with one value somewhere replaced by junk (or a junk key added)."""
    raw = draw(recipes())
    out = draw(st.sampled_from(raw["outputs"]))
    target = draw(st.sampled_from(out["ops"])) if out["ops"] and draw(st.booleans()) else out
    key = draw(st.sampled_from(sorted(target) + ["bogus"]))
    target[key] = draw(JUNK)
    return raw


@settings(max_examples=300, deadline=None)
@given(raw=broken())
def test_every_rejection_names_an_existing_field(raw):
    try:
        parse_recipe(raw)
    except RecipeError as exc:
        assert exc.field and exc.message and str(exc).startswith(exc.field)
        assert resolve(raw, exc.field), (exc.field, raw)
