"""`imgburst preview` and `imgburst presets`: try a recipe on one image, and see the
named recipes, without curl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from urllib3.filepost import encode_multipart_formdata

from imgburst.cli.api_options import api_options, client_for
from imgburst.cli.console import answer, console

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp",
              "image/avif": "avif", "image/gif": "gif", "image/tiff": "tiff"}


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--preset", default=None, help="A named recipe (see `imgburst presets`).")
@click.option("--recipe", "recipe_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              help="Recipe JSON file (default: the default recipe).")
@click.option("--output", "output_name", default=None,
              help="Which of the recipe's outputs to render (default: its first).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write it (default: <file>.<output>.<format> "
                                 "beside this folder's other files, in the current folder).")
@api_options
def preview(file: Path, preset: str | None, recipe_file: Path | None, output_name: str | None,
            out_path: Path | None, url: str | None, api_key: str | None) -> None:
    """Render one output of a recipe for one small image (up to the API's preview size),
    as a batch would, and write it to a file."""
    if preset is not None and recipe_file is not None:
        raise click.UsageError("give --preset or --recipe, not both")
    fields: dict[str, Any] = {"file": (file.name, file.read_bytes())}
    if recipe_file is not None:
        try:
            fields["recipe"] = json.dumps(json.loads(recipe_file.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise click.BadParameter(f"{recipe_file} is not JSON: {exc}",
                                     param_hint="--recipe") from None
    if preset is not None:
        fields["preset"] = preset
    if output_name is not None:
        fields["output"] = output_name
    body, kind = encode_multipart_formdata(fields)
    got = client_for(url, api_key).request("POST", "/api/v1/preview", data=body,
                                           headers={"Content-Type": kind}, timeout=120)
    name = got.headers.get("X-Imgburst-Output", output_name or "output")
    ext = EXTENSIONS.get((got.headers.get("Content-Type") or "").split(";")[0], "img")
    target = out_path or Path(f"{file.stem}.{name}.{ext}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(got.content)
    console.print(f"{name}: {got.headers.get('X-Imgburst-Size', '?')} {ext.upper()}, "
                  f"{len(got.content) / 1000:.1f} kB", markup=False)
    click.echo(str(target))


@click.command()
@api_options
def presets(url: str | None, api_key: str | None) -> None:
    """List the named recipes a batch may use (`submit --preset NAME`) and what each
    makes."""
    items = client_for(url, api_key).json("GET", "/api/v1/presets")["items"]
    table = Table("preset", "outputs", pad_edge=False)
    for item in items:
        table.add_row(item["name"], "\n".join(_describe(o) for o in item["recipe"]["outputs"]))
    answer.print(table)


def _describe(output: dict[str, Any]) -> str:
    """`thumb: webp, resize 256x256 fit`: an output as one line."""
    return ", ".join([f"{output['name']}: {output.get('format', 'auto')}",
                      *(_op(op) for op in output.get("ops", []))])


def _op(op: dict[str, Any]) -> str:
    """`resize 256x256 fit`, `blur radius=2`: an operation and its parameters."""
    params = {k: v for k, v in op.items() if k != "op"}
    size = "x".join(str(params.pop(k)) for k in ("width", "height") if k in params)
    mode = params.pop("mode", None)
    return " ".join([op["op"], *([size] if size else []), *([mode] if mode else []),
                     *(f"{k}={v}" for k, v in params.items())])
