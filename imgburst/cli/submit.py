"""`imgburst submit`: a folder (or files) up as one streamed batch, with progress, then
optionally waiting for it and downloading its outputs.

The first image leaves before the terminal's libraries (rich) are loaded: they load while
it is on its way, so the workers start ~25 ms sooner on the user's path.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from imgburst.cli.api_client import (
    IMAGE_SUFFIXES,
    ApiError,
    Client,
    LocalImage,
    collect_files,
)
from imgburst.cli.api_options import api_options, client_for
from imgburst.cli.console import escape, stderr
from imgburst.cli.stream import changes, close_batch, held, open_batch, resume_key, send_images
from imgburst.core.statuses import BATCH_FINAL, MAX_BATCH_NAME

if TYPE_CHECKING:
    from rich.console import Console


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
@click.option("--wait", is_flag=True, help="Show progress until the batch is done.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Wait (as --wait), then download the outputs here, as "
                                 "`imgburst fetch --out` does.")
@api_options
def submit(paths: tuple[Path, ...], recipe_file: Path | None, preset: str | None,
           name: str | None, wait: bool, out_dir: Path | None, url: str | None,
           api_key: str | None) -> None:
    """Upload images (files or folders) as one batch: each image's job is queued as it
    arrives; run again, it continues an interrupted upload and sends only what is missing."""
    client = client_for(url, api_key)
    files = collect_files(paths)
    if not files:
        raise click.UsageError(f"no image files in the given folders (looked for "
                               f"{' '.join(IMAGE_SUFFIXES)}; hidden files are skipped)")
    fields: dict[str, Any] = {}
    if recipe_file is not None:
        try:
            fields["recipe"] = json.loads(recipe_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise click.BadParameter(f"{recipe_file} is not JSON: {exc}",
                                     param_hint="--recipe") from None
    if preset is not None:
        fields["preset"] = preset
    if name is None and len(paths) == 1 and paths[0].is_dir():
        name = paths[0].resolve().name[:MAX_BATCH_NAME] or None
    if name is not None:
        check_name(name)
        fields["name"] = name
    max_bytes = client.json("GET", "/api/v1/limits")["max_file_bytes"]
    if too_large := [sized(image) for image in files if image.path.stat().st_size > max_bytes]:
        nothing_sent(too_large, f"over the API's {max_bytes / 2**20:g} MB limit for one "
                                "image (IMGBURST_MAX_FILE_MB)")
    key = resume_key(list(paths), fields)
    batch = open_batch(client, fields, key)
    batch_id = batch["id"]
    closed: list[dict[str, Any]] = []  # the batch, once closed: Ctrl-C then only stops
    try:
        batch = stream(client, batch, files, lambda: open_batch(client, fields, key), closed)
    except KeyboardInterrupt:
        if closed:  # every image is in: the batch goes on
            stopped("stopped", batch_id)
        stderr().print(f"upload stopped; batch {batch_id} keeps what it received and waits: "
                       "run the same command again to send the rest (it is closed "
                       "IMGBURST_RECEIVE_IDLE_S after its last image otherwise)")
        click.echo(batch_id)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        stderr().print(f"upload cut short: batch {batch_id} keeps what it received; run the "
                       "same command again to send the rest")
        click.echo(batch_id)
        raise exc from None
    if not wait and out_dir is None:
        click.echo(batch_id)
        if batch["jobs"] == batch["counts"]["failed"]:
            raise SystemExit(1)  # nothing was queued: every image failed at arrival
        return
    try:
        from imgburst.cli.batches import download_outputs, print_outcome  # after the upload
        batch = wait_for_batch(client, batch, stderr())
    except KeyboardInterrupt:
        stopped("stopped waiting", batch_id)
    print_outcome(client, [batch])
    if out_dir is None:
        stderr().print(f"fetch the outputs: imgburst fetch {batch_id} --out ./outputs")
    elif batch["counts"]["succeeded"]:
        try:
            download_outputs(client, [batch_id], out_dir)
        except KeyboardInterrupt:
            stderr().print(f"download stopped; the outputs wait: imgburst fetch {batch_id} "
                           f"--out {out_dir}", markup=False)
            click.echo(batch_id)
            raise SystemExit(130) from None
    click.echo(batch_id)
    if batch["status"] != "succeeded":
        raise SystemExit(1)


def stream(client: Client, batch: dict[str, Any], files: list[LocalImage],
           reopen: Callable[[], Any], closed: list[dict[str, Any]]) -> dict[str, Any]:
    """Send the images the batch lacks under one bar, close it; the closed batch (also
    put in `closed` the moment it is). `reopen` opens it again (closed for idleness
    while this run was asleep)."""
    batch_id = batch["id"]
    todo = files
    if batch.get("resumed"):
        there = held(client, batch_id)
        todo = [f for f in files if there.get(f.name) != f.path.stat().st_size]
        stderr().print(f"batch [bold]{batch_id}[/bold] continues an interrupted upload: "
                       f"{len(files) - len(todo)} of {len(files)} images are there already")
    bar = SendBar(len(todo), sum(f.path.stat().st_size for f in todo))
    with ExitStack() as shown:
        sent = send_images(client, batch_id, todo, bar.advance, bar.held_back, reopen,
                           started=lambda: bar.show(shown))
    for image, why in sent.not_sent:
        stderr().print(f"[yellow]not sent: {escape(image)}: {escape(why)}[/yellow]")
    try:
        answer = close_batch(client, batch_id, len(files) - len(sent.not_sent))
    except ApiError as exc:
        if exc.status != 409:
            raise
        answer = client.json("POST", f"/api/v1/batches/{batch_id}/close")  # say, not hide
        stderr().print(f"[yellow]{escape(exc.message)}[/yellow]")
    closed.append(answer)
    failed = answer["counts"]["failed"]
    queued = answer["jobs"] - failed
    stderr().print(f"batch [bold]{batch_id}[/bold]: {queued} job{'' if queued == 1 else 's'} "
                   "queued" + (f", {failed} failed at arrival (no image the service reads)"
                               if failed else ""))
    return answer


class SendBar:
    """The upload's progress bar, shown (`show`) once the first image is on its way;
    what was sent before it shows is counted in. Senders report from their threads."""

    def __init__(self, images: int, total_bytes: int) -> None:
        self.images, self.total_bytes = images, total_bytes
        self.lock = threading.Lock()
        self.sent, self.note = 0, ""
        self.progress: Any = None  # rich's Progress, once shown
        self.task: Any = None

    def show(self, stack: ExitStack) -> None:
        """Load rich, show the bar until `stack` closes."""
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )
        columns = (TextColumn(f"sending {self.images} images"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TextColumn("{task.fields[note]}"))
        progress = stack.enter_context(Progress(*columns, console=stderr(), transient=True))
        with self.lock:
            self.task = progress.add_task("send", total=self.total_bytes,
                                          completed=self.sent, note=self.note)
            self.progress = progress

    def advance(self, size: int) -> None:
        with self.lock:
            self.sent += size
            if self.progress is not None:
                self.progress.update(self.task, completed=self.sent)

    def held_back(self, seconds: float) -> None:
        with self.lock:
            self.note = (f"[yellow]held back: the key's images in flight "
                         f"(IMGBURST_QUOTA_IN_FLIGHT), sending again every {seconds:g} s"
                         "[/yellow]")
            if self.progress is not None:
                self.progress.update(self.task, note=self.note)


def wait_for_batch(client: Client, batch: dict[str, Any], console: Console) -> dict[str, Any]:
    """Follow the batch by long-poll with one progress bar (on `console`, stderr: stdout
    is the batch id alone, for scripts) until it reaches a final status."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("processing", total=batch["jobs"], detail="")
        for latest in changes(client, batch["id"]):
            c = latest["counts"]
            progress.update(task, total=latest["jobs"],
                            completed=c["succeeded"] + c["failed"] + c["cancelled"],
                            detail=f"{c['running']} running, {c['queued']} queued, "
                                   f"{c['failed']} failed")
            if latest["status"] in BATCH_FINAL:
                return latest
    raise AssertionError("unreachable: changes() ends only with its client")


def nothing_sent(images: list[str], why: str) -> NoReturn:
    """Stop `submit` before a byte is sent, over images the API would refuse."""
    raise click.UsageError(f"{len(images)} image{'s are' if len(images) > 1 else ' is'} "
                           f"{why}: {', '.join(images[:5])}{' ...' if len(images) > 5 else ''}"
                           "; leave them out or resize them; nothing was sent")


def sized(image: LocalImage) -> str:
    """An image as a refusal names it: its path and size."""
    return f"{image.path} ({image.path.stat().st_size / 1e6:.1f} MB)"


def check_name(name: str) -> None:
    """Refuse, before a byte is sent, a name the API would refuse."""
    if not name.strip() or not name.isprintable() or len(name.strip()) > MAX_BATCH_NAME:
        raise click.BadParameter(f"a batch's name is 1..{MAX_BATCH_NAME} printable characters",
                                 param_hint="--name")


def stopped(what: str, batch_id: str) -> NoReturn:
    """Ctrl-C once the batch is closed: it goes on; say how to follow it, id on stdout."""
    stderr().print(f"{what}; the batch goes on: imgburst status {batch_id} (cancel what has "
                   f"not started: imgburst cancel {batch_id})")
    click.echo(batch_id)
    raise SystemExit(130)
