"""The pipeline: decode once, run each output's operations in order, encode.

`APPLY` maps each operation class of `core.recipes` to its function. Outputs that start
by shrinking the whole image reuse a larger output's first step when it is at least
twice their size (the 256 px thumbnail is made from the 1024 px preview, not from the
decoded photo): same geometry, a quarter of the resampling work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imgburst.core.recipes import (
    Blur,
    Brightness,
    Contrast,
    Crop,
    Extend,
    Flip,
    Flop,
    Grayscale,
    Op,
    OutputSpec,
    Recipe,
    Resize,
    Rotate,
    Saturation,
    Sharpen,
    Trim,
    Watermark,
)
from imgburst.worker.imaging import adjust, geometry
from imgburst.worker.imaging.encode import encode
from imgburst.worker.imaging.errors import ImageError, Limits
from imgburst.worker.imaging.frame import Env, Frame
from imgburst.worker.imaging.source import DECODE_ERRORS, Source, decode
from imgburst.worker.imaging.watermark import watermark

# Each type's function takes that type of operation: a map no static type says whole.
APPLY: dict[type[Op], Callable[[Frame, Any, Env], Frame]] = {
    Resize: geometry.resize, Crop: geometry.crop, Trim: geometry.trim,
    Extend: geometry.extend, Rotate: geometry.rotate, Flip: geometry.flip,
    Flop: geometry.flop, Grayscale: adjust.grayscale, Blur: adjust.blur,
    Sharpen: adjust.sharpen, Brightness: adjust.brightness, Contrast: adjust.contrast,
    Saturation: adjust.saturation, Watermark: watermark,
}
REUSE_FACTOR = 2.0


@dataclass(frozen=True)
class Rendered:
    name: str
    format: str
    width: int
    height: int
    data: bytes


def _first_resize(spec: OutputSpec) -> Resize | None:
    first = spec.ops[0] if spec.ops else None
    return first if isinstance(first, Resize) else None


def _shrinks_whole(op: Resize | None) -> bool:
    """A resize whose result shows all of the image, undistorted (reusable by others)."""
    return op is not None and op.mode == "fit"


def render(source: Source, recipe: Recipe, env: Env, accept: str | None = None
           ) -> list[Rendered]:
    """Apply each output's operations to the decoded image and encode it."""
    base = Frame(source.image, (float(source.size[0]), float(source.size[1])))
    targets = {spec.name: geometry.resize_plan(first, base.size)[0]
               for spec in recipe.outputs if (first := _first_resize(spec))}
    order = sorted(recipe.outputs, key=lambda s: -(targets.get(s.name, (1 << 30, 1))[0]))
    reusable: list[Frame] = []  # whole-image shrinks already made, largest first
    rendered: dict[str, Rendered] = {}
    for spec in order:
        frame, ops = base, list(spec.ops)
        first = _first_resize(spec)
        if first is not None:
            target = targets[spec.name]
            for candidate in reusable:
                if (candidate.image.width >= target[0] * REUSE_FACTOR
                        and candidate.image.height >= target[1] * REUSE_FACTOR):
                    frame = Frame(candidate.image, base.size)
        try:
            if first is not None:
                frame = APPLY[Resize](frame, first, env)
                ops = ops[1:]
                if _shrinks_whole(first):
                    reusable.append(frame)
            for op in ops:
                frame = APPLY[type(op)](frame, op, env)
            fmt, data = encode(frame.image, spec, source, accept)
        except ImageError:
            raise
        except DECODE_ERRORS as exc:
            raise ImageError(f"output {spec.name!r} failed: {exc}") from None
        rendered[spec.name] = Rendered(spec.name, fmt, frame.image.width, frame.image.height,
                                       data)
    return [rendered[spec.name] for spec in recipe.outputs]


def process(data: bytes, recipe: Recipe, limits: Limits | None = None,
            assets: Mapping[str, bytes] | None = None, accept: str | None = None
            ) -> list[Rendered]:
    """Make every output of `recipe` from one image; raise `ImageError` for a bad image."""
    env = Env(limits or Limits(), assets or {})
    return render(decode(data, recipe, env.limits), recipe, env, accept)
