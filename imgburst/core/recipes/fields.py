"""Parameter types of recipes: each one validates a JSON value and describes itself.

An operation or an output declares its parameters with these (`Int(1, 10000)`,
`Colour()`...). One declaration gives three things: the validation with a message that
names the field, the normalised value the worker runs, and the JSON Schema the OpenAPI
document publishes. Values stay JSON-native (`"#ff8000ff"`, `"fp:0.3:0.7"`) so a parsed
recipe round-trips through the job store unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from PIL import ImageColor

MAX_SIDE = 10000
COMPASS = {  # gravity -> anchor as fractions of the free space (x, y)
    "centre": (0.5, 0.5), "n": (0.5, 0.0), "s": (0.5, 1.0), "e": (1.0, 0.5), "w": (0.0, 0.5),
    "ne": (1.0, 0.0), "nw": (0.0, 0.0), "se": (1.0, 1.0), "sw": (0.0, 1.0),
}
GRAVITY_ALIASES = {"center": "centre", "c": "centre", "north": "n", "south": "s", "east": "e",
                   "west": "w"}
FP_RE = re.compile(r"^fp:([0-9.]+):([0-9.]+)$")


class RecipeError(ValueError):
    """A recipe is invalid; `field` says where, `message` says what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


def at(where: str, key: str) -> str:
    """The path of `key` inside `where` (`outputs[0].ops[1]` + `width`)."""
    return f"{where}.{key}" if where else key


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecipeError(where or "recipe", "must be an object")
    return value


def no_extra(params: dict[str, Any], allowed: set[str] | dict[str, Any], where: str) -> None:
    for key in params:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise RecipeError(at(where, str(key)), f"is not a known parameter (known: {known})")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Param:
    """One parameter's type: `read` validates and normalises, `schema` describes it."""

    def read(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Param):
    low: int
    high: int

    def read(self, value: Any, where: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not (
                self.low <= value <= self.high):
            raise RecipeError(where, f"must be {self.low}..{self.high}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Number(Param):
    low: float
    high: float

    def read(self, value: Any, where: str) -> float:
        if not _is_number(value) or not self.low <= value <= self.high:
            raise RecipeError(where, f"must be a number {self.low:g}..{self.high:g}")
        return float(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Bool(Param):
    def read(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise RecipeError(where, "must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[str, ...]

    def read(self, value: Any, where: str) -> str:
        if value not in self.choices:
            raise RecipeError(where, f"must be one of {', '.join(self.choices)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Text(Param):
    max_length: int
    pattern: str | None = None
    hint: str = ""

    def read(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= self.max_length:
            raise RecipeError(where, f"must be a string of 1..{self.max_length} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise RecipeError(where, "must not contain control characters")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise RecipeError(where, f"must look like {self.hint or self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return out


@dataclass(frozen=True)
class Colour(Param):
    """CSS colour names or hex (`#rgb`, `#rrggbb`, `#rrggbbaa`), kept as `#rrggbbaa`."""

    def read(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or len(value) > 32:
            raise RecipeError(where, "must be a colour such as \"#ffffff\", \"#0008\" or \"white\"")
        try:
            rgba = ImageColor.getrgb(value)
        except ValueError:
            raise RecipeError(where, f"is not a colour: {value!r} (use \"#rrggbb\", "
                              "\"#rrggbbaa\" or a CSS name)") from None
        if len(rgba) == 3:
            rgba = (*rgba, 255)
        return "#{:02x}{:02x}{:02x}{:02x}".format(*rgba)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "examples": ["#ffffff", "#00000080", "white"]}


def rgba(colour: str) -> tuple[int, int, int, int]:
    """`#rrggbbaa` (as `Colour` normalises it) -> an RGBA tuple."""
    value = colour.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16), int(value[6:8], 16))


@dataclass(frozen=True)
class Gravity(Param):
    """Where a crop or a placement anchors: a compass point, `smart`, or `fp:x:y`."""

    smart: bool = True
    focal: bool = True

    def read(self, value: Any, where: str) -> str:
        word = GRAVITY_ALIASES.get(value, value) if isinstance(value, str) else ""
        if word in COMPASS or (self.smart and word == "smart"):
            return word
        match = FP_RE.match(word) if self.focal and isinstance(word, str) else None
        if match:
            try:
                x, y = float(match[1]), float(match[2])
            except ValueError:
                x = y = -1.0
            if 0 <= x <= 1 and 0 <= y <= 1:
                return f"fp:{x:g}:{y:g}"
            raise RecipeError(where, "focal point fp:x:y needs x and y in 0..1")
        raise RecipeError(where, f"must be one of {', '.join(self.words())}")

    def words(self) -> list[str]:
        return list(COMPASS) + (["smart"] if self.smart else []) + (
            ["fp:x:y"] if self.focal else [])

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "examples": self.words()}


def anchor(gravity: str) -> tuple[float, float] | None:
    """A gravity as fractions (x, y) of the free space; None for `smart`."""
    if gravity == "smart":
        return None
    if gravity.startswith("fp:"):
        _, x, y = gravity.split(":")
        return float(x), float(y)
    return COMPASS[gravity]


@dataclass(frozen=True)
class Extent(Param):
    """A length in pixels (a whole number) or a fraction of the image (0 < x <= 1, decimal)."""

    zero: bool = False

    def read(self, value: Any, where: str) -> int | float:
        low = 0 if self.zero else 1
        if isinstance(value, int) and not isinstance(value, bool):
            if low <= value <= MAX_SIDE:
                return value
        elif isinstance(value, float) and (value >= 0 if self.zero else value > 0) and value <= 1:
            return value
        raise RecipeError(where, f"must be pixels ({low}..{MAX_SIDE}, a whole number) or a "
                          f"fraction of the image ({'0' if self.zero else '>0'}..1.0, decimal)")

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "integer", "minimum": 0 if self.zero else 1,
                           "maximum": MAX_SIDE},
                          {"type": "number", "exclusiveMinimum": 0, "maximum": 1}]}


@dataclass(frozen=True)
class Aspect(Param):
    """An aspect ratio as `"16:9"` or a number (width / height)."""

    def read(self, value: Any, where: str) -> float:
        ratio: float | None = None
        if _is_number(value):
            ratio = float(value)
        elif isinstance(value, str) and re.fullmatch(r"\d{1,5}:\d{1,5}", value):
            w, h = (int(v) for v in value.split(":"))
            ratio = w / h if h else None
        if ratio is None or not 0.01 <= ratio <= 100:
            raise RecipeError(where, "must be an aspect ratio such as \"16:9\" or 1.5 "
                              "(0.01..100)")
        return round(ratio, 6)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "string", "pattern": r"^\d{1,5}:\d{1,5}$"},
                          {"type": "number", "minimum": 0.01, "maximum": 100}]}


@dataclass(frozen=True)
class ChoiceList(Param):
    """A non-empty list of distinct words from `choices`, order kept (a preference)."""

    choices: tuple[str, ...]

    def read(self, value: Any, where: str) -> tuple[str, ...]:
        if (not isinstance(value, list) or not value or len(set(map(str, value))) != len(value)
                or any(v not in self.choices for v in value)):
            raise RecipeError(where, f"must be a list of distinct values from "
                              f"{', '.join(self.choices)}")
        return tuple(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "uniqueItems": True,
                "items": {"type": "string", "enum": list(self.choices)}}
