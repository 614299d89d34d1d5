"""Recipes: which outputs to make from each image, validated whole before anything runs.

A recipe is plain JSON. `parse_recipe` turns it into frozen dataclasses or raises a
`RecipeError` naming the offending field (`outputs[1].ops[0].width must be 1..10000`).
Each operation is a small class that validates its own parameters; the worker's imaging
module maps each class to the Pillow code that applies it. The API and the worker share
this module, so a recipe the API accepted is exactly the recipe the worker runs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

MAX_SIDE = 10000
MAX_OUTPUTS = 16
MAX_OPS = 20
FORMATS = ("jpeg", "png", "webp")
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
DEFAULT_QUALITY = {"jpeg": 85, "png": None, "webp": 80}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class RecipeError(ValueError):
    """A recipe is invalid; `field` says where, `message` says what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecipeError(where, "must be an object")
    return value


def _no_extra(params: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in params:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise RecipeError(_at(where, key), f"is not a known parameter (known: {known})")


def _int(params: dict[str, Any], key: str, where: str, low: int, high: int,
         default: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecipeError(_at(where, key), f"must be {low}..{high}")
    return value


def _bool(params: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise RecipeError(_at(where, key), "must be true or false")
    return value


def _choice(params: dict[str, Any], key: str, where: str, choices: tuple[str, ...],
            default: str | None = None) -> str:
    value = params.get(key, default)
    if value not in choices:
        raise RecipeError(_at(where, key), f"must be one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Op:
    """One image operation. Subclasses set `name` and validate in `parse`."""

    name: ClassVar[str]

    @classmethod
    def parse(cls, params: dict[str, Any], where: str) -> Op:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.name, **{k: v for k, v in asdict(self).items() if v is not None}}


@dataclass(frozen=True)
class Resize(Op):
    """Scale into a box: `fit` keeps the whole image inside, `fill` covers and centre-crops."""

    name: ClassVar[str] = "resize"
    MODES: ClassVar[tuple[str, ...]] = ("fit", "fill")

    width: int | None
    height: int | None
    mode: str = "fit"
    enlarge: bool = False

    @classmethod
    def parse(cls, params: dict[str, Any], where: str) -> Resize:
        _no_extra(params, {"op", "width", "height", "mode", "enlarge"}, where)
        width = _int(params, "width", where, 1, MAX_SIDE)
        height = _int(params, "height", where, 1, MAX_SIDE)
        mode = _choice(params, "mode", where, cls.MODES, "fit")
        if width is None and height is None:
            raise RecipeError(f"{where}.width", "or height is required")
        if mode == "fill" and (width is None or height is None):
            missing = "width" if width is None else "height"
            raise RecipeError(f"{where}.{missing}", "is required with mode fill")
        return cls(width, height, mode, _bool(params, "enlarge", where, False))


@dataclass(frozen=True)
class Grayscale(Op):
    """Drop colour (luminance only); keeps alpha."""

    name: ClassVar[str] = "grayscale"

    @classmethod
    def parse(cls, params: dict[str, Any], where: str) -> Grayscale:
        _no_extra(params, {"op"}, where)
        return cls()


OPS: dict[str, type[Op]] = {op.name: op for op in (Resize, Grayscale)}


@dataclass(frozen=True)
class OutputSpec:
    """One output of every image: its name, format, quality and operations."""

    name: str
    format: str
    quality: int | None
    ops: tuple[Op, ...] = field(default_factory=tuple)

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "format": self.format}
        if self.quality is not None:
            out["quality"] = self.quality
        out["ops"] = [op.to_dict() for op in self.ops]
        return out


@dataclass(frozen=True)
class Recipe:
    outputs: tuple[OutputSpec, ...]
    auto_orient: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"auto_orient": self.auto_orient, "outputs": [o.to_dict() for o in self.outputs]}

    def output(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


def _parse_op(raw: Any, where: str) -> Op:
    params = _object(raw, where)
    name = params.get("op")
    if not isinstance(name, str) or name not in OPS:
        raise RecipeError(f"{where}.op", f"must be one of {', '.join(sorted(OPS))}")
    return OPS[name].parse(params, where)


def _parse_output(raw: Any, where: str) -> OutputSpec:
    params = _object(raw, where)
    _no_extra(params, {"name", "format", "quality", "ops"}, where)
    name = params.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RecipeError(
            f"{where}.name", "must be 1-64 lowercase letters, digits, - or _ (e.g. thumb)"
        )
    fmt = params.get("format", "jpeg")
    if isinstance(fmt, str):
        fmt = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    if fmt not in FORMATS:
        raise RecipeError(f"{where}.format", f"must be one of {', '.join(FORMATS)}")
    quality = _int(params, "quality", where, 1, 100, DEFAULT_QUALITY[fmt])
    ops_raw = params.get("ops", [])
    if not isinstance(ops_raw, list):
        raise RecipeError(f"{where}.ops", "must be a list")
    if len(ops_raw) > MAX_OPS:
        raise RecipeError(f"{where}.ops", f"must have at most {MAX_OPS} operations")
    ops = tuple(_parse_op(op, f"{where}.ops[{i}]") for i, op in enumerate(ops_raw))
    return OutputSpec(name=name, format=fmt, quality=quality, ops=ops)


def parse_recipe(raw: Any) -> Recipe:
    """Validate a whole recipe (JSON-decoded) and return it; raise `RecipeError` otherwise."""
    params = _object(raw, "recipe")
    _no_extra(params, {"outputs", "auto_orient"}, "")
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
    return Recipe(outputs=outputs, auto_orient=_bool(params, "auto_orient", "", True))


DEFAULT_RECIPE_JSON: dict[str, Any] = {
    "outputs": [
        {"name": "thumb", "format": "webp", "quality": 80,
         "ops": [{"op": "resize", "width": 256, "height": 256, "mode": "fit"}]},
        {"name": "medium", "format": "jpeg", "quality": 85,
         "ops": [{"op": "resize", "width": 1024, "height": 1024, "mode": "fit"}]},
    ]
}
DEFAULT_RECIPE = parse_recipe(DEFAULT_RECIPE_JSON)
