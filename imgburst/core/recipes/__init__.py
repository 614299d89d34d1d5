"""Recipes: the JSON users write to say which outputs to make from each image.

- `fields`: parameter types (validation, normalisation, JSON Schema);
- `ops`: one class per image operation;
- `recipe`: outputs, formats and `parse_recipe`;
- `presets`: named recipes.

The API and the worker share this package, so a recipe the API accepted is exactly the
recipe the worker runs.
"""

from imgburst.core.recipes.fields import MAX_SIDE, RecipeError, anchor, rgba
from imgburst.core.recipes.ops import (
    ASSET_MAX_PIXELS,
    ASSET_MAX_SIDE,
    OPS,
    Blur,
    Brightness,
    Contrast,
    Crop,
    Extend,
    Flip,
    Flop,
    Grayscale,
    Op,
    Resize,
    Rotate,
    Saturation,
    Sharpen,
    Trim,
    Watermark,
)
from imgburst.core.recipes.presets import BUILTIN, PresetError, load_presets
from imgburst.core.recipes.recipe import (
    AUTO_PREFERENCE,
    DEFAULT_RECIPE,
    DEFAULT_RECIPE_JSON,
    EXTENSIONS,
    FORMAT_OPTIONS,
    FORMATS,
    MEDIA_TYPES,
    OutputSpec,
    Recipe,
    parse_recipe,
)

__all__ = [
    "ASSET_MAX_PIXELS", "ASSET_MAX_SIDE", "AUTO_PREFERENCE", "BUILTIN", "DEFAULT_RECIPE",
    "DEFAULT_RECIPE_JSON", "EXTENSIONS",
    "FORMATS", "FORMAT_OPTIONS", "MAX_SIDE", "MEDIA_TYPES", "OPS", "Blur", "Brightness",
    "Contrast", "Crop", "Extend", "Flip", "Flop", "Grayscale", "Op", "OutputSpec",
    "PresetError", "Recipe", "RecipeError", "Resize", "Rotate", "Saturation", "Sharpen",
    "Trim", "Watermark", "anchor", "load_presets", "parse_recipe", "rgba",
]
