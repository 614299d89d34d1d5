"""`imgburst submit`: a folder (or files) up as batches, with progress, then optionally
waiting for them and downloading their outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from imgburst.cli.api_client import (
    IMAGE_SUFFIXES,
    ApiError,
    Client,
    api_limits,
    collect_files,
    job_counts,
    part_fields,
    post_part,
)
from imgburst.cli.batches import api_options, client_for, download_outputs, print_outcome
from imgburst.cli.console import console, load_settings
from imgburst.cli.multipart import LocalImage, MultipartFiles, fitting_parts
from imgburst.core.statuses import BATCH_FINAL, MAX_BATCH_NAME

MAX_DEFAULT_NAME = 180  # of a folder's name as its batch's: the API takes 200, numbered too


@click.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--recipe", "recipe_file", type=click.Path(exists=True, dir_okay=False,
                                                         path_type=Path),
              help="Recipe JSON file (default: 256 px WebP thumb + 1024 px JPEG).")
@click.option("--preset", default=None,
              help="A named recipe instead of --recipe (see GET /api/v1/presets).")
@click.option("--name", default=None,
              help="A name for the batch, shown beside its id (default: the folder's name "
                   "when one folder is given).")
@click.option("--wait", is_flag=True, help="Show progress until the batches are done.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Wait (as --wait), then download the outputs here, as "
                                 "`imgburst fetch --out` does.")
@api_options
def submit(paths: tuple[Path, ...], recipe_file: Path | None, preset: str | None,
           name: str | None, wait: bool, out_dir: Path | None, url: str | None,
           api_key: str | None) -> None:
    """Upload images (files or folders) as one batch, or as several when they are more
    than one batch may hold (the API's limits: GET /api/v1/limits)."""
    client = client_for(url, api_key)
    files = collect_files(paths)
    if not files:
        raise click.UsageError(f"no image files in the given folders (looked for "
                               f"{' '.join(IMAGE_SUFFIXES)}; hidden files are skipped)")
    data: dict[str, str] = {}
    if recipe_file is not None:
        try:
            text = recipe_file.read_text(encoding="utf-8")
            json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise click.BadParameter(f"{recipe_file} is not JSON: {exc}",
                                     param_hint="--recipe") from None
        data["recipe"] = text
    if preset is not None:
        data["preset"] = preset
    limits = api_limits(client, load_settings())
    if too_large := over_the_image_limit(files, limits.max_file_bytes):
        nothing_sent(too_large, f"over the API's {limits.max_file_bytes / 2**20:g} MB "
                                "limit for one image (IMGBURST_MAX_FILE_MB)")
    if name is None and len(paths) == 1 and paths[0].is_dir():
        name = paths[0].resolve().name[:MAX_DEFAULT_NAME] or None
    widest = data | ({"name": f"{name} (999999/999999)"} if name else {})  # any part's
    parts = fitting_parts(widest, files, limits.max_files, limits.max_upload_bytes)
    if name is not None:
        check_name(name, len(parts))
    if unfit := [sized(part[0]) for part in parts  # alone in its part, still too large
                 if len(MultipartFiles(widest, part)) > limits.max_upload_bytes]:
        nothing_sent(unfit, f"larger than one batch may be, the API's "
                            f"{limits.max_upload_bytes / 2**20:g} MB "
                            "(IMGBURST_MAX_UPLOAD_MB)")
    if len(parts) > 1:
        console.print(f"{len(files)} images: {len(parts)} batches (one holds at most "
                      f"{limits.max_files} images and {limits.max_upload_bytes / 2**20:g} "
                      "MB)")
    batches: list[dict[str, Any]] = []
    try:
        upload(client, data, parts, batches, name)
    except (KeyboardInterrupt, click.ClickException) as exc:
        upload_cut_short(exc, batches, len(parts), len(files))
    try:  # from here on the batches exist: an interrupt must still say which they are
        ids = [b["id"] for b in batches]
        if not wait and out_dir is None:
            click.echo("\n".join(ids))
            return
        batches = wait_for_batches(client, ids, sum(b["jobs"] for b in batches), console)
    except KeyboardInterrupt:
        stopped("stopped waiting", [b["id"] for b in batches])
    print_outcome(client, batches)
    if out_dir is None:
        console.print(f"fetch the outputs: imgburst fetch {' '.join(ids)} --out ./outputs")
    elif any(b["counts"]["succeeded"] for b in batches):
        try:
            download_outputs(client, ids, out_dir)
        except KeyboardInterrupt:
            console.print(f"download stopped; the outputs wait: imgburst fetch "
                          f"{' '.join(ids)} --out {out_dir}", markup=False)
            click.echo("\n".join(ids))
            raise SystemExit(130) from None
    click.echo("\n".join(ids))
    if any(b["status"] != "succeeded" for b in batches):
        raise SystemExit(1)



def wait_for_batches(client: Client, batch_ids: list[str], total: int,
                     console: Console) -> list[dict[str, Any]]:
    """Poll the batches with one progress bar (on `console`, stderr: stdout is the batch
    ids alone, for scripts) until each reaches a final status."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    final: dict[str, dict[str, Any]] = {}
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("processing", total=total, detail="")
        while True:
            latest = [final.get(i) or client.json("GET", f"/api/v1/batches/{i}")
                      for i in batch_ids]
            final |= {b["id"]: b for b in latest if b["status"] in BATCH_FINAL}
            c = job_counts(latest)
            progress.update(task, completed=c["succeeded"] + c["failed"] + c["cancelled"],
                            detail=f"{c['running']} running, {c['queued']} queued, "
                                   f"{c['failed']} failed")
            if len(final) == len(batch_ids):
                return latest
            time.sleep(0.5)


def nothing_sent(images: list[str], why: str) -> NoReturn:
    """Stop `submit` before a byte is sent, over images the API would refuse."""
    raise click.UsageError(f"{len(images)} image{'s are' if len(images) > 1 else ' is'} "
                           f"{why}: {', '.join(images[:5])}{' ...' if len(images) > 5 else ''}"
                           "; leave them out or resize them; nothing was sent")


def sized(image: LocalImage) -> str:
    """An image as a refusal names it: its path and size."""
    return f"{image.path} ({image.path.stat().st_size / 1e6:.1f} MB)"


def over_the_image_limit(files: list[LocalImage], max_file_bytes: int) -> list[str]:
    """The files the API would refuse the whole upload for, each with its size."""
    return [sized(image) for image in files if image.path.stat().st_size > max_file_bytes]


def check_name(name: str, count: int) -> None:
    """Refuse, before a byte is sent, a name the API would refuse once the upload is in."""
    longest = part_fields({}, name.strip(), count - 1, count)["name"]
    if not name.strip() or not name.isprintable() or len(longest) > MAX_BATCH_NAME:
        raise click.BadParameter(f"a batch's name is 1..{MAX_BATCH_NAME} printable characters"
                                 + (f", with its number ({count} batches)" if count > 1 else ""),
                                 param_hint="--name")


def upload(client: Client, fields: dict[str, str], parts: list[list[LocalImage]],
           batches: list[dict[str, Any]], name: str | None = None) -> None:
    """POST each part as a batch under one upload bar; `batches` gets each as it is made."""
    forms = [part_fields(fields, name, i, len(parts)) for i in range(len(parts))]
    lengths = [len(MultipartFiles(form, part)) for form, part in zip(forms, parts, strict=True)]
    columns = (TextColumn(f"uploading {sum(map(len, parts))} images"), BarColumn(),
               DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("upload", total=sum(lengths))
        for i, part in enumerate(parts):
            def turned_away(exc: ApiError, sent: int = sum(lengths[:i])) -> None:
                progress.console.print(f"{escape(exc.message.split(':')[0])}: sending it again in "
                                       f"{exc.retry_after:.0f} s (Retry-After; Ctrl-C stops)")
                progress.update(task, completed=sent)

            batch = post_part(client, forms[i], part, lambda n: progress.advance(task, n),
                              turned_away)
            batches.append(batch)
            refused = batch["counts"]["failed"]
            queued = batch["jobs"] - refused
            progress.console.print(f"batch [bold]{batch['id']}[/bold]: {queued} "
                                   f"job{'' if queued == 1 else 's'} queued"
                                   + (f", {refused} refused" if refused else ""))


def upload_cut_short(exc: BaseException, batches: list[dict[str, Any]], parts: int,
                     images: int) -> NoReturn:
    """Ctrl-C or an error mid-upload: say which batches were made (ids on stdout), if any."""
    ids = [b["id"] for b in batches]
    interrupted = isinstance(exc, KeyboardInterrupt)
    if interrupted and len(batches) == parts:
        stopped("stopped", ids)  # every batch was made just before
    if interrupted:
        console.print("upload stopped: a batch is made only once its whole upload has "
                      "arrived (`imgburst status` lists the batches there are)")
    if batches:
        sent = sum(b["jobs"] for b in batches)
        console.print(f"{len(batches)} of {parts} batches were made ({sent} of {images} "
                      "images); the rest was not")
        click.echo("\n".join(ids))
    if interrupted:
        raise SystemExit(130) from None
    raise exc


def stopped(what: str, batch_ids: list[str]) -> NoReturn:
    """Ctrl-C once the batches exist: they go on; say how to follow them, ids on stdout."""
    if len(batch_ids) == 1:
        console.print(f"{what}; the batch goes on: imgburst status {batch_ids[0]} (cancel "
                      f"what has not started: imgburst cancel {batch_ids[0]})")
    else:
        console.print(f"{what}; the {len(batch_ids)} batches go on: imgburst status (cancel "
                      f"what has not started: imgburst cancel {' '.join(batch_ids)})")
    click.echo("\n".join(batch_ids))
    raise SystemExit(130)
