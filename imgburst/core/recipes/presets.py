"""Named presets: recipes a batch names (`"preset": "web"`) instead of spelling them out.

Built-in presets cover the common cases; a JSON file (`IMGBURST_PRESETS_FILE`) adds or
replaces presets by name. Every preset is validated when it is loaded, so a bad file
stops start-up with the preset and field named, not a batch later.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from imgburst.core.recipes.fields import RecipeError
from imgburst.core.recipes.recipe import DEFAULT_RECIPE_JSON, Recipe, parse_recipe

PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

BUILTIN: dict[str, dict[str, Any]] = {
    "thumbnails": DEFAULT_RECIPE_JSON,
    "web": {"outputs": [
        {"name": "small", "format": "auto", "prefer": ["webp"], "ops": [
            {"op": "resize", "width": 640, "height": 640}]},
        {"name": "large", "format": "auto", "prefer": ["webp"], "ops": [
            {"op": "resize", "width": 1600, "height": 1600}]},
        {"name": "fallback", "format": "jpeg", "quality": 82, "progressive": True, "ops": [
            {"op": "resize", "width": 1600, "height": 1600}]},
    ]},
    "avatar": {"outputs": [
        {"name": "avatar", "format": "webp", "quality": 85, "ops": [
            {"op": "resize", "width": 128, "height": 128, "mode": "fill",
             "gravity": "smart"}]},
        {"name": "avatar-2x", "format": "webp", "quality": 80, "ops": [
            {"op": "resize", "width": 128, "height": 128, "mode": "fill",
             "gravity": "smart", "dpr": 2}]},
    ]},
    "social": {"outputs": [
        {"name": "card", "format": "jpeg", "quality": 85, "max_bytes": 300_000, "ops": [
            {"op": "resize", "width": 1200, "height": 630, "mode": "fill",
             "gravity": "smart"}]},
    ]},
}


class PresetError(ValueError):
    """The presets file can't be used; the message names the preset and field."""


def load_presets(path: Path | None) -> dict[str, Recipe]:
    """The built-in presets, overlaid with those of `path` (a JSON object name -> recipe)."""
    raw: dict[str, Any] = dict(BUILTIN)
    if path is not None:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PresetError(f"can't read {path}: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PresetError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise PresetError(f"{path} must hold a JSON object of preset name -> recipe")
        raw.update(loaded)
    presets = {}
    for name, recipe in raw.items():
        if not PRESET_NAME.match(name):
            raise PresetError(f"preset name {name!r} must be 1-64 lowercase letters, digits, "
                              "- or _")
        try:
            presets[name] = parse_recipe(recipe)
        except RecipeError as exc:
            raise PresetError(f"preset {name!r}: {exc}") from None
    return presets
