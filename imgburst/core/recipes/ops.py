"""Image operations as recipe data: one small class per operation, each validating itself.

Each class declares its parameters (`params`, types from `fields`) and which are
required; `Op.parse` checks a JSON object against them and `check` adds the rules that
span parameters. The worker's `imaging` package maps each class to the Pillow code that
applies it. To add an operation: a class here, registered in `OPS`, and its function in
`worker/imaging`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from imgburst.core.recipes.fields import (
    MAX_SIDE,
    Aspect,
    Bool,
    Choice,
    Colour,
    Extent,
    Gravity,
    Int,
    Number,
    Param,
    RecipeError,
    Text,
    at,
    no_extra,
)

TRANSPARENT = "#00000000"
FILTERS = ("lanczos", "bicubic", "bilinear", "box", "nearest")
DEFAULT_FILTER = "bicubic"  # Pillow's own thumbnail() default: near-lanczos quality, faster
ASSET_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
ASSET_MAX_SIDE = 4096  # a logo; a 10 x 5,000,000 "logo" is 50 MP of thin air
ASSET_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class Op:
    """One image operation. Subclasses set `name`, `params`, `required`, maybe `check`."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    required: ClassVar[tuple[str, ...]] = ()
    scale_free: ClassVar[bool] = False
    """True when the result does not depend on the source's pixel density, so the
    decoder may shrink the image before this operation runs (JPEG draft)."""

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str) -> Op:
        no_extra(raw, {"op", *cls.params}, where)
        for key in cls.required:
            if key not in raw:
                raise RecipeError(at(where, key), f"is required for {cls.name}")
        values = {key: cls.params[key].read(value, at(where, key))
                  for key, value in raw.items() if key != "op"}
        op = cls(**values)
        op.check(where)
        return op

    def check(self, where: str) -> None:
        """Rules that span parameters; raise `RecipeError` naming the field."""

    def to_dict(self) -> dict[str, Any]:
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()
                  if v is not None}
        return {"op": self.name, **values}


@dataclass(frozen=True)
class Resize(Op):
    """Scale into a box. `fit` keeps all of the image inside it (never enlarges unless
    `enlarge`); `fill` covers it exactly and crops what sticks out (at `gravity`);
    `fill-down` is `fill` that never enlarges (keeps the box's aspect); `force` stretches
    to the box. `dpr` multiplies the box for high-density screens."""

    name: ClassVar[str] = "resize"
    MODES: ClassVar[tuple[str, ...]] = ("fit", "fill", "fill-down", "force")
    params: ClassVar[dict[str, Param]] = {
        "width": Int(1, MAX_SIDE), "height": Int(1, MAX_SIDE), "mode": Choice(MODES),
        "enlarge": Bool(), "gravity": Gravity(), "dpr": Number(0.1, 8),
        "filter": Choice(FILTERS),
    }
    scale_free = True

    width: int | None = None
    height: int | None = None
    mode: str = "fit"
    enlarge: bool = False
    gravity: str = "centre"
    dpr: float = 1.0
    filter: str = DEFAULT_FILTER

    def check(self, where: str) -> None:
        if self.width is None and self.height is None:
            raise RecipeError(at(where, "width"), "or height is required")
        if self.mode in ("fill", "fill-down") and (self.width is None or self.height is None):
            missing = "width" if self.width is None else "height"
            raise RecipeError(at(where, missing), f"is required with mode {self.mode}")
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None and value * self.dpr > MAX_SIDE:
                raise RecipeError(at(where, "dpr"), f"makes {key} {value * self.dpr:g}, above "
                                  f"{MAX_SIDE}")

    @property
    def box(self) -> tuple[int | None, int | None]:
        """The box in output pixels, `dpr` applied."""
        scaled = [None if v is None else max(1, round(v * self.dpr))
                  for v in (self.width, self.height)]
        return scaled[0], scaled[1]


@dataclass(frozen=True)
class Crop(Op):
    """Cut a box out: pixels (whole numbers) or fractions of the image (decimals); placed
    at `left`/`top`, or by `gravity` (a compass point, `smart`, or `fp:x:y`)."""

    name: ClassVar[str] = "crop"
    params: ClassVar[dict[str, Param]] = {
        "left": Extent(zero=True), "top": Extent(zero=True), "width": Extent(),
        "height": Extent(), "gravity": Gravity(),
    }
    required = ("width", "height")

    width: int | float = 1.0
    height: int | float = 1.0
    left: int | float | None = None
    top: int | float | None = None
    gravity: str = "centre"

    def check(self, where: str) -> None:
        if (self.left is None) != (self.top is None):
            missing = "top" if self.top is None else "left"
            raise RecipeError(at(where, missing), "is required with "
                              f"{'left' if missing == 'top' else 'top'} (or give neither and "
                              "use gravity)")

    @property
    def scale_free(self) -> bool:  # type: ignore[override]
        return all(isinstance(v, float) or v is None
                   for v in (self.width, self.height, self.left, self.top))


@dataclass(frozen=True)
class Trim(Op):
    """Remove a uniform border: pixels within `tolerance` of `colour` (by default the
    top-left pixel's colour)."""

    name: ClassVar[str] = "trim"
    params: ClassVar[dict[str, Param]] = {"tolerance": Int(0, 255), "colour": Colour()}
    scale_free = True

    tolerance: int = 10
    colour: str | None = None


@dataclass(frozen=True)
class Extend(Op):
    """Grow the canvas to at least `width` x `height`, or to an `aspect`, filling with
    `background`; the image sits at `gravity`. Never shrinks. Also called `pad`."""

    name: ClassVar[str] = "extend"
    params: ClassVar[dict[str, Param]] = {
        "width": Int(1, MAX_SIDE), "height": Int(1, MAX_SIDE), "aspect": Aspect(),
        "background": Colour(), "gravity": Gravity(smart=False),
    }

    width: int | None = None
    height: int | None = None
    aspect: float | None = None
    background: str = TRANSPARENT
    gravity: str = "centre"

    def check(self, where: str) -> None:
        sized = self.width is not None or self.height is not None
        if sized == (self.aspect is not None):
            raise RecipeError(at(where, "width"), "(and/or height) or aspect is required, "
                              "not both")


@dataclass(frozen=True)
class Rotate(Op):
    """Turn counter-clockwise by `angle` degrees; right angles are exact, other angles
    grow the canvas and fill the corners with `background`."""

    name: ClassVar[str] = "rotate"
    params: ClassVar[dict[str, Param]] = {"angle": Number(-360, 360), "background": Colour()}
    required = ("angle",)

    angle: float = 0.0
    background: str = TRANSPARENT

    @property
    def scale_free(self) -> bool:  # type: ignore[override]
        return self.angle % 90 == 0


@dataclass(frozen=True)
class Flip(Op):
    """Mirror top to bottom."""

    name: ClassVar[str] = "flip"
    scale_free = True


@dataclass(frozen=True)
class Flop(Op):
    """Mirror left to right."""

    name: ClassVar[str] = "flop"
    scale_free = True


@dataclass(frozen=True)
class Grayscale(Op):
    """Drop colour (luminance only); keeps alpha."""

    name: ClassVar[str] = "grayscale"
    scale_free = True


@dataclass(frozen=True)
class Blur(Op):
    """Gaussian blur of standard deviation `sigma` pixels."""

    name: ClassVar[str] = "blur"
    params: ClassVar[dict[str, Param]] = {"sigma": Number(0.1, 100)}
    required = ("sigma",)

    sigma: float = 1.0


@dataclass(frozen=True)
class Sharpen(Op):
    """Unsharp mask: `sigma` pixels, `amount` (1 = 100%), `threshold` levels left alone."""

    name: ClassVar[str] = "sharpen"
    params: ClassVar[dict[str, Param]] = {
        "sigma": Number(0.1, 10), "amount": Number(0, 10), "threshold": Int(0, 255)}

    sigma: float = 1.0
    amount: float = 1.0
    threshold: int = 2


@dataclass(frozen=True)
class _Enhance(Op):
    params: ClassVar[dict[str, Param]] = {"factor": Number(0, 10)}
    required = ("factor",)
    scale_free = True

    factor: float = 1.0


@dataclass(frozen=True)
class Brightness(_Enhance):
    """Multiply brightness by `factor` (1 = unchanged, 0 = black)."""

    name: ClassVar[str] = "brightness"


@dataclass(frozen=True)
class Contrast(_Enhance):
    """Scale contrast by `factor` (1 = unchanged, 0 = flat grey)."""

    name: ClassVar[str] = "contrast"


@dataclass(frozen=True)
class Saturation(_Enhance):
    """Scale colour saturation by `factor` (1 = unchanged, 0 = grey)."""

    name: ClassVar[str] = "saturation"


@dataclass(frozen=True)
class Watermark(Op):
    """Lay an image (an uploaded asset, `image`) or a `text` over the picture at
    `position`, `margin` pixels from the edges, with `opacity`. An image mark is scaled to
    `scale` of the picture's width; a text mark is `size` pixels high (default: 4% of the
    picture's width)."""

    name: ClassVar[str] = "watermark"
    params: ClassVar[dict[str, Param]] = {
        "image": Text(128, ASSET_NAME, "an asset name such as logo.png"),
        "text": Text(200), "position": Gravity(smart=False, focal=False),
        "margin": Int(0, 1000), "opacity": Number(0, 1), "scale": Number(0.01, 1),
        "size": Int(4, 1000), "colour": Colour(),
    }

    image: str | None = None
    text: str | None = None
    position: str = "se"
    margin: int = 16
    opacity: float = 0.5
    scale: float = 0.25
    size: int | None = None
    colour: str = "#ffffffff"

    def check(self, where: str) -> None:
        if (self.image is None) == (self.text is None):
            raise RecipeError(at(where, "image"), "or text is required, not both")


OPS: dict[str, type[Op]] = {op.name: op for op in (
    Resize, Crop, Trim, Extend, Rotate, Flip, Flop, Grayscale, Blur, Sharpen,
    Brightness, Contrast, Saturation, Watermark)}
ALIASES = {"pad": "extend", "greyscale": "grayscale"}


def parse_op(raw: Any, where: str) -> Op:
    if not isinstance(raw, dict):
        raise RecipeError(where, "must be an object with an \"op\"")
    name = raw.get("op")
    name = ALIASES.get(name, name) if isinstance(name, str) else None
    if name not in OPS:
        raise RecipeError(at(where, "op"), f"must be one of {', '.join(sorted(OPS))}")
    return OPS[name].parse(raw, where)
