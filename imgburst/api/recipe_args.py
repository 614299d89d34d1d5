"""Reading a recipe from a request: a `recipe` (JSON) or a `preset` name, never both.

Shared by the endpoints that take a recipe (batches, preview). The recipe is validated
whole, and the watermark assets it names must exist, before anything is stored.
"""

from __future__ import annotations

from typing import Any

from flask import request

from imgburst.api.errors import Problem
from imgburst.api.json_body import MAX_JSON_BYTES, parse_json
from imgburst.api.services import Services
from imgburst.core.blobs import BlobError, BlobNotFound, asset_path
from imgburst.core.recipes import DEFAULT_RECIPE, Recipe, RecipeError, Watermark, parse_recipe


def recipe_from(svc: Services, raw: Any, preset: Any) -> Recipe:
    """The recipe a request asks for: spelled out, named by a preset, or the default."""
    if raw is not None and preset is not None:
        raise Problem(400, "Invalid recipe", "give recipe or preset, not both", field="preset")
    if preset is not None:
        if not isinstance(preset, str) or preset not in svc.settings.presets:
            known = ", ".join(sorted(svc.settings.presets))
            raise Problem(400, "Unknown preset", f"preset must be one of {known}",
                          field="preset")
        recipe = svc.settings.presets[preset]
    elif raw is None:
        return DEFAULT_RECIPE
    else:
        try:
            recipe = parse_recipe(raw)
        except RecipeError as exc:
            raise Problem(400, "Invalid recipe", str(exc), field=exc.field) from None
    check_assets(svc, recipe)
    return recipe


def recipe_from_form(svc: Services) -> Recipe:
    """The recipe of a multipart request (a `recipe` part holding JSON, or `preset`)."""
    text = request.form.get("recipe")
    if text is None and "recipe" in request.files:
        data = request.files["recipe"].read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise Problem(413, "Recipe too large", f"the recipe part is over "
                          f"{MAX_JSON_BYTES >> 10} KB", field="recipe")
        text = data.decode("utf-8", errors="replace")
    raw = None
    if text is not None and text.strip():
        raw = parse_json(text, field="recipe")
    return recipe_from(svc, raw, request.form.get("preset") or None)


def check_assets(svc: Services, recipe: Recipe) -> None:
    """Refuse a recipe whose watermark image was never uploaded (before 10,000 jobs fail)."""
    for i, spec in enumerate(recipe.outputs):
        for j, op in enumerate(spec.ops):
            if not isinstance(op, Watermark) or op.image is None:
                continue
            try:
                svc.blobs.head(asset_path(op.image), 1)
            except BlobNotFound:
                raise Problem(400, "Unknown asset", f"watermark image {op.image!r} was not "
                              f"uploaded; PUT it to /api/v1/assets/{op.image} first",
                              field=f"outputs[{i}].ops[{j}].image") from None
            except BlobError as exc:
                raise Problem(503, "Blob store unavailable", f"{exc}; try again shortly",
                              headers={"Retry-After": "5"}) from None
