"""A recipe: which outputs to make from each image, validated whole before anything runs.

`parse_recipe` turns plain JSON into frozen dataclasses or raises a `RecipeError` naming
the offending field (`outputs[1].ops[0].width must be a whole number 1..10000`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from imgburst.core.recipes.fields import (
    Bool,
    ChoiceList,
    Colour,
    Int,
    Param,
    RecipeError,
    at,
    no_extra,
    obj,
)
from imgburst.core.recipes.ops import Op, Watermark, parse_op

MAX_OUTPUTS = 16
MAX_OPS = 20
NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
FORMATS = ("jpeg", "png", "webp", "avif", "gif", "auto")
ENCODED = ("jpeg", "png", "webp", "avif", "gif")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"}
MEDIA_TYPES = {f: f"image/{f}" for f in ENCODED}
DEFAULT_QUALITY = {"jpeg": 85, "webp": 80, "avif": 60}
AUTO_PREFERENCE = ("avif", "webp")
COMMON = ("name", "format", "ops", "background", "keep_icc", "keep_exif")
FORMAT_OPTIONS = {  # which output parameters each format takes
    "jpeg": ("quality", "progressive", "max_bytes"),
    "png": ("compression", "palette", "colors"),
    "webp": ("quality", "lossless", "max_bytes"),
    "avif": ("quality", "speed", "max_bytes"),
    "gif": ("colors",),
    "auto": ("quality", "prefer", "max_bytes"),
}


@dataclass(frozen=True)
class OutputSpec:
    """One output of every image: its name, format and options, and its operations.

    `format` may be `auto`: the worker picks from `prefer` (or the client's `Accept`
    header on a preview) and otherwise keeps the source's format. `background` fills
    transparency where the format has none (JPEG). Metadata is stripped unless
    `keep_exif`; colour profiles are converted to sRGB unless `keep_icc`.
    """

    params: ClassVar[dict[str, Param]] = {
        "quality": Int(1, 100), "progressive": Bool(), "max_bytes": Int(100, 100 << 20),
        "compression": Int(0, 9), "palette": Bool(), "colors": Int(2, 256),
        "lossless": Bool(), "speed": Int(0, 10),
        "prefer": ChoiceList(("avif", "webp", "jpeg", "png")), "background": Colour(),
        "keep_icc": Bool(), "keep_exif": Bool(),
    }

    name: str
    format: str = "jpeg"
    ops: tuple[Op, ...] = field(default_factory=tuple)
    quality: int | None = None
    progressive: bool = False
    max_bytes: int | None = None
    compression: int = 6
    palette: bool = False
    colors: int = 256
    lossless: bool = False
    speed: int = 8
    prefer: tuple[str, ...] | None = None
    background: str = "#ffffffff"
    keep_icc: bool = False
    keep_exif: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "format": self.format}
        for key in FORMAT_OPTIONS[self.format] + COMMON[3:]:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        out["ops"] = [op.to_dict() for op in self.ops]
        return out

    def quality_for(self, fmt: str) -> int:
        return self.quality if self.quality is not None else DEFAULT_QUALITY.get(fmt, 85)

    @property
    def assets(self) -> set[str]:
        return {op.image for op in self.ops if isinstance(op, Watermark) and op.image}


@dataclass(frozen=True)
class Recipe:
    outputs: tuple[OutputSpec, ...]
    auto_orient: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"auto_orient": self.auto_orient, "outputs": [o.to_dict() for o in self.outputs]}

    def output(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)

    @property
    def assets(self) -> set[str]:
        """Names of the uploaded assets (watermark images) the recipe uses."""
        return set().union(*(o.assets for o in self.outputs))


def _parse_output(raw: Any, where: str) -> OutputSpec:
    params = obj(raw, where)
    fmt = params.get("format", "jpeg")
    if isinstance(fmt, str):
        fmt = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise RecipeError(at(where, "format"), f"must be one of {', '.join(FORMATS)}")
    allowed = set(COMMON) | set(FORMAT_OPTIONS[fmt])
    for key in params:
        if key not in allowed and key in OutputSpec.params:
            takers = [f for f, keys in FORMAT_OPTIONS.items() if key in keys]
            raise RecipeError(at(where, key), f"does not apply to {fmt} (only to "
                              f"{', '.join(takers)})")
    no_extra(params, allowed, where)
    name = params.get("name")
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise RecipeError(at(where, "name"), "must be 1-64 lowercase letters, digits, - or _ "
                          "(e.g. thumb)")
    values = {key: OutputSpec.params[key].read(value, at(where, key))
              for key, value in params.items() if key in OutputSpec.params}
    ops_raw = params.get("ops", [])
    if not isinstance(ops_raw, list):
        raise RecipeError(at(where, "ops"), "must be a list")
    if len(ops_raw) > MAX_OPS:
        raise RecipeError(at(where, "ops"), f"must have at most {MAX_OPS} operations")
    ops = tuple(parse_op(op, f"{where}.ops[{i}]") for i, op in enumerate(ops_raw))
    if fmt == "auto" and "prefer" not in values:
        values["prefer"] = None
    return OutputSpec(name=name, format=fmt, ops=ops, **values)


def parse_recipe(raw: Any) -> Recipe:
    """Validate a whole recipe (JSON-decoded) and return it; raise `RecipeError` otherwise."""
    params = obj(raw, "recipe")
    no_extra(params, {"outputs", "auto_orient"}, "")
    outputs_raw = params.get("outputs")
    if not isinstance(outputs_raw, list) or not outputs_raw:
        raise RecipeError("outputs", "must be a non-empty list")
    if len(outputs_raw) > MAX_OUTPUTS:
        raise RecipeError("outputs", f"must have at most {MAX_OUTPUTS} entries")
    outputs = tuple(_parse_output(o, f"outputs[{i}]") for i, o in enumerate(outputs_raw))
    seen: set[str] = set()
    for i, out in enumerate(outputs):
        if out.name in seen:
            raise RecipeError(f"outputs[{i}].name", f"repeats {out.name!r}; names must be unique")
        seen.add(out.name)
    auto_orient = Bool().read(params.get("auto_orient", True), "auto_orient")
    return Recipe(outputs=outputs, auto_orient=auto_orient)


DEFAULT_RECIPE_JSON: dict[str, Any] = {
    "outputs": [
        {"name": "thumb", "format": "webp", "quality": 80,
         "ops": [{"op": "resize", "width": 256, "height": 256, "mode": "fit"}]},
        {"name": "medium", "format": "jpeg", "quality": 85,
         "ops": [{"op": "resize", "width": 1024, "height": 1024, "mode": "fit"}]},
    ]
}
DEFAULT_RECIPE = parse_recipe(DEFAULT_RECIPE_JSON)
