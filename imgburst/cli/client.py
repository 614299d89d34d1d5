"""`imgburst submit`, `status`, `fetch`: the HTTP client side, with rich progress."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

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
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from imgburst.cli.multipart import LocalImage
    from imgburst.core.settings import Settings

# What a folder's images are called; the service itself goes by their magic bytes.
IMAGE_SUFFIXES = (".avif", ".bmp", ".gif", ".heic", ".heif", ".jfif", ".jpeg", ".jpg", ".mpo",
                  ".png", ".tif", ".tiff", ".webp")
FINAL = {"succeeded", "failed", "partial", "cancelled"}
MAX_TURNED_AWAY = 100  # 429s in a row for one batch before `submit` gives up
LONGEST_WAIT_S = 300  # a 429 that says to come back later than this (a key's daily quota)
                      # ends `submit` with the API's message instead of a silent wait
MAX_DEFAULT_NAME = 180  # of a folder's name as its batch's: the API takes 200, numbered too


class ApiError(click.ClickException):
    """An API answer or a connection problem, said in words a user can act on."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, when the API said to come back (429)


class Client:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        import requests  # here, not at import: `imgburst worker` starts faster without it

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """`path` on the API (sent with the key), or an absolute signed URL (sent without:
        a blob store's SAS URL needs no key and must never see ours)."""
        import requests

        absolute = path.startswith(("http://", "https://"))
        headers = kwargs.pop("headers", {}) | ({} if absolute else self.auth)
        try:
            response = self.http.request(method, path if absolute else self.url + path,
                                         headers=headers,
                                         timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.ConnectionError:
            raise ApiError(f"can't reach the imgburst API at {self.url}: is `imgburst up` "
                           "running? (or pass --url / set IMGBURST_URL)") from None
        except requests.Timeout:
            raise ApiError(f"the API at {self.url} did not answer in time") from None
        if response.status_code == 401 and not self.auth:
            raise ApiError("the API wants a key: pass --api-key or set IMGBURST_API_KEY "
                           "(`imgburst up` makes one and keeps it in $IMGBURST_HOME/api-key)")
        if response.status_code == 401:
            raise ApiError("the API refused the key (--api-key, IMGBURST_API_KEY or "
                           "$IMGBURST_HOME/api-key, in that order): check it is the right "
                           "one for this API, or `imgburst keygen` and configure a new one")
        if response.status_code >= 400:
            try:
                problem = response.json()
                where = f" (field: {problem['field']})" if problem.get("field") else ""
                message = f"{problem.get('title', 'Error')}: {problem.get('detail', '')}{where}"
            except (ValueError, KeyError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            retry_after = response.headers.get("Retry-After", "")
            raise ApiError(message, response.status_code,
                           float(retry_after) if retry_after.isdigit() else None)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def login_link(self) -> tuple[str, int]:
        """A one-time dashboard link for this client's key, and its lifetime in seconds:
        printed instead of the key, which never appears in a terminal or a log."""
        link = self.json("POST", "/api/v1/login-links")
        return self.url + link["path"], link["expires_in"]

    def jobs(self, batch_id: str) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.json("GET", f"/api/v1/batches/{batch_id}/jobs",
                             params={"limit": 500, "offset": offset})
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return


def images_under(folder: Path) -> list[Path]:
    """Image files (by suffix, in any case) under `folder`, in path order. Hidden files and
    folders are left out: `.git`, `.thumbnails`, and the `._IMG_0001.jpg` resource forks
    macOS leaves on shared drives, which are no images at all."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def collect_files(paths: tuple[Path, ...]) -> list[LocalImage]:
    """Files named directly (sent by their name), plus the image files under named
    folders (sent by their path inside the folder: `day1/IMG_0001.jpg`)."""
    from imgburst.cli.multipart import LocalImage

    files: list[LocalImage] = []
    for path in paths:
        if path.is_dir():
            files += [LocalImage(p, p.relative_to(path).as_posix()) for p in images_under(path)]
        else:
            files.append(LocalImage(path, path.name))
    return files


def job_counts(batches: list[dict[str, Any]]) -> Counter[str]:
    """The batches' jobs by status, as if they were one batch."""
    total = Counter[str]()
    for batch in batches:
        total.update(batch["counts"])
    return total


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
            final |= {b["id"]: b for b in latest if b["status"] in FINAL}
            c = job_counts(latest)
            progress.update(task, completed=c["succeeded"] + c["failed"] + c["cancelled"],
                            detail=f"{c['running']} running, {c['queued']} queued, "
                                   f"{c['failed']} failed")
            if len(final) == len(batch_ids):
                return latest
            time.sleep(0.5)


class Limits(NamedTuple):
    """What one batch may hold, as `GET /api/v1/limits` says."""

    max_files: int
    max_upload_bytes: int
    max_file_bytes: int


def api_limits(client: Client, settings: Settings) -> Limits:
    """The API's own limits: a cluster's may differ from this machine's environment, which
    is used only with an API too old to say (404)."""
    try:
        said = client.json("GET", "/api/v1/limits")
    except ApiError as exc:
        if exc.status != 404:
            raise
        return Limits(settings.max_files, settings.max_upload_mb << 20,
                      settings.max_file_mb << 20)
    return Limits(said["max_files"], said["max_upload_bytes"], said["max_file_bytes"])


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


def input_place(job: dict[str, Any]) -> tuple[Path, str]:
    """The folders and stem an input's outputs are written under (`day1`, `IMG_0001`):
    the input's name as the API keeps it, with nothing that could climb out of --out."""
    parts = [p for p in PurePosixPath(job["input"]).parts if p not in ("/", ".", "..")]
    stem = PurePosixPath(parts[-1]).stem if parts else ""
    return Path(*parts[:-1]), stem or job["id"]


def download_outputs(client: Client, batch_ids: tuple[str, ...] | list[str],
                     out_dir: Path) -> None:
    """Every output of the batches under `out_dir` (<output>/<input's folders>/<stem>.<ext>),
    with a bar, then which jobs gave none and why (failed, cancelled, not done yet)."""
    from imgburst.cli import console

    every = {batch_id: list(client.jobs(batch_id)) for batch_id in batch_ids}
    jobs = [j for batch in every.values() for j in batch if j["outputs"]]
    total = sum(len(j["outputs"]) for j in jobs)
    if not total:
        raise ApiError(f"batch{'es' if len(batch_ids) > 1 else ''} {' '.join(batch_ids)} "
                       f"{'have' if len(batch_ids) > 1 else 'has'} no outputs yet "
                       f"(imgburst status {batch_ids[0]})")
    written: set[Path] = set()
    with Progress(TextColumn("downloading"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:
        task = progress.add_task("fetch", total=total)
        for job in jobs:
            folders, stem = input_place(job)
            for output in job["outputs"]:
                ext = {"jpeg": "jpg"}.get(output["format"], output["format"])
                target = out_dir / output["name"] / folders / f"{stem}.{ext}"
                if target in written:  # two inputs with the same name
                    target = target.with_name(f"{stem}-{job['id'][:8]}.{ext}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.request("GET", output["url"]).content)
                written.add(target)
                progress.advance(task)
    console.print(f"wrote {len(written)} files under {out_dir}", markup=False)
    for batch_id, batch_jobs in every.items():
        missing = Counter(j["status"] for j in batch_jobs if not j["outputs"])
        if missing:  # failed, cancelled or not done yet: say so, not just what was written
            count = sum(missing.values())
            said = ", ".join(f"{n} {status}" for status, n in sorted(missing.items()))
            console.print(f"[yellow]no outputs from {count} job{'s' if count > 1 else ''} "
                          f"({said})[/yellow]: imgburst status {batch_id}")


def print_outcome(client: Client, batches: list[dict[str, Any]]) -> None:
    """One line per finished batch, its failures under it; a split upload ends with the
    whole upload's line, what the user asked about."""
    from imgburst.cli import console

    for batch in batches:
        c = batch["counts"]
        took = batch["duration_ms"] and f" in {batch['duration_ms'] / 1000:.1f} s"
        console.print(f"batch {batch['id']} {batch['status']}: {c['succeeded']} succeeded, "
                      f"{c['failed']} failed{took or ''}")
        if c["failed"]:
            print_failures(client, batch["id"])
    if len(batches) > 1:
        total = job_counts(batches)
        span = [datetime.fromisoformat(b[k]) for b in batches
                for k in ("created_at", "finished_at") if b[k]]
        seconds = (max(span) - min(span)).total_seconds() if span else 0.0
        cancelled = f", {total['cancelled']} cancelled" if total["cancelled"] else ""
        console.print(f"all {len(batches)} batches: {total['succeeded']} succeeded, "
                      f"{total['failed']} failed{cancelled} in {seconds:.1f} s")


def print_failures(client: Client, batch_id: str, limit: int = 10) -> None:
    failed = [j for j in client.jobs(batch_id) if j["status"] == "failed"]
    for job in failed[:limit]:
        click.echo(f"  failed: {job['input']}: {job['error']}", err=True)
    if len(failed) > limit:
        click.echo(f"  ... and {len(failed) - limit} more (imgburst status {batch_id})", err=True)


def _when(timestamp: str) -> str:
    """An API timestamp (ISO 8601, UTC) to the second, date and time apart: a narrow
    terminal wraps it at the space instead of cutting it to the year and month."""
    return timestamp[:19].replace("T", " ")


def post_part(client: Client, fields: dict[str, str], part: list[LocalImage],
              on_read: Callable[[int], None],
              on_turned_away: Callable[[ApiError], None]) -> dict[str, Any]:
    """One part as a batch. A 429 (the queue's bound, the key's rate: nothing was stored)
    sends it again after the Retry-After the API gives, up to MAX_TURNED_AWAY times (a
    key's quota, which frees up only in hours, ends it with the API's message). It
    carries an Idempotency-Key, so a connection dropped before the answer is sent again
    once, safely: the API answers a repeat with the batch the first one made."""
    from imgburst.cli.multipart import MultipartFiles

    turned_away, dropped = 0, 0
    key = uuid.uuid4().hex
    while True:
        body = MultipartFiles(fields, part, on_read=on_read)
        try:
            with body:
                return client.json("POST", "/api/v1/batches", data=body, timeout=600,
                                   headers={"Content-Type": body.content_type,
                                            "Idempotency-Key": key})
        except ApiError as exc:
            if exc.status is None and not dropped:  # no answer: the same request, once
                dropped += 1
                time.sleep(1)
                continue
            turned_away += 1
            waits = exc.status == 429 or (exc.status == 409 and dropped > 0)  # 409: the first
            if (not waits or exc.retry_after is None or turned_away > MAX_TURNED_AWAY
                    or exc.retry_after > LONGEST_WAIT_S):
                raise  # is still at work (or died): its answer comes once it ends
            if exc.status == 429:
                on_turned_away(exc)
            time.sleep(exc.retry_after)


def part_fields(fields: dict[str, str], name: str | None, index: int,
                count: int) -> dict[str, str]:
    """The form fields of part `index` of `count`: its batch's name numbered when a folder
    goes as several (`holiday (2/3)`)."""
    if name is None:
        return fields
    return fields | {"name": name if count == 1 else f"{name} ({index + 1}/{count})"}


def check_name(name: str, count: int) -> None:
    """Refuse, before a byte is sent, a name the API would refuse once the upload is in."""
    from imgburst.core.schema import MAX_BATCH_NAME

    longest = part_fields({}, name.strip(), count - 1, count)["name"]
    if not name.strip() or not name.isprintable() or len(longest) > MAX_BATCH_NAME:
        raise click.BadParameter(f"a batch's name is 1..{MAX_BATCH_NAME} printable characters"
                                 + (f", with its number ({count} batches)" if count > 1 else ""),
                                 param_hint="--name")


def upload(client: Client, fields: dict[str, str], parts: list[list[LocalImage]],
           batches: list[dict[str, Any]], name: str | None = None) -> None:
    """POST each part as a batch under one upload bar; `batches` gets each as it is made."""
    from imgburst.cli import console
    from imgburst.cli.multipart import MultipartFiles

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
    from imgburst.cli import console

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
    from imgburst.cli import console

    if len(batch_ids) == 1:
        console.print(f"{what}; the batch goes on: imgburst status {batch_ids[0]} (cancel "
                      f"what has not started: imgburst cancel {batch_ids[0]})")
    else:
        console.print(f"{what}; the {len(batch_ids)} batches go on: imgburst status (cancel "
                      f"what has not started: imgburst cancel {' '.join(batch_ids)})")
    click.echo("\n".join(batch_ids))
    raise SystemExit(130)


def register(cli: click.Group) -> None:
    from imgburst.cli import answer, console, load_settings

    def url_option(fn: Callable[..., None]) -> Callable[..., None]:
        fn = click.option("--api-key", envvar="IMGBURST_API_KEY", default=None,
                          help="Bearer key (default IMGBURST_API_KEY, else the key `imgburst "
                               "up` keeps in $IMGBURST_HOME/api-key).")(fn)
        return click.option("--url", default=None,
                            help="API URL (default IMGBURST_URL, else the running `imgburst up`'s, "
                                 "else http://127.0.0.1:8000).")(fn)

    def client_for(url: str | None, api_key: str | None) -> Client:
        from imgburst.cli.local_key import read_local_key
        from imgburst.cli.local_url import default_url

        settings = load_settings()
        return Client(url or default_url(settings), api_key or read_local_key(settings.home))

    @cli.command()
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
    @url_option
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
        from imgburst.cli.multipart import MultipartFiles, fitting_parts  # urllib3: here only

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

    @cli.command()
    @click.argument("batch_id", required=False)
    @click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True,
                  help="How many of the newest batches to list.")
    @url_option
    def status(batch_id: str | None, limit: int, url: str | None, api_key: str | None) -> None:
        """Show recent batches, or one batch and its jobs."""
        client = client_for(url, api_key)
        if batch_id is None:
            page = client.json("GET", "/api/v1/batches", params={"limit": limit})
            if not page["items"]:
                console.print("no batches yet: imgburst submit ./photos --wait")
                return
            # Fits 80 columns: the id whole, to copy; the date whole, the time below it.
            table = Table(Column("batch", no_wrap=True, min_width=32), "status", "done",
                          "failed", Column("created (UTC)", min_width=10))
            for b in page["items"]:
                c = b["counts"]
                label = b["id"] + (f"\n[dim]{escape(b['name'])}[/dim]" if b.get("name") else "")
                table.add_row(label, b["status"], f"{c['succeeded']}/{b['jobs']}",
                              str(c["failed"]), _when(b["created_at"]))
            answer.print(table)
            if page["total"] > len(page["items"]):
                console.print(f"the newest {len(page['items'])} of {page['total']} batches "
                              "(--limit for more)")
            return
        batch = client.json("GET", f"/api/v1/batches/{batch_id}")
        c = batch["counts"]
        named = f" ({escape(batch['name'])})" if batch.get("name") else ""
        answer.print(f"batch [bold]{batch['id']}[/bold]{named} {batch['status']}: "
                      + ", ".join(f"{n} {s}" for s, n in c.items() if n))
        # Job ids cut as the dashboard cuts them, one output per line, a narrow "tries",
        # no padding at the edges: at 80 columns an output's size stays on its line, and
        # a long input name or worker wraps rather than losing its end.
        table = Table("job", Column("input", overflow="fold"), "status",
                      Column("tries", justify="right"), Column("worker", overflow="fold"),
                      Column("outputs / error", min_width=len("medium 1024x768")),
                      pad_edge=False)
        for job in client.jobs(batch_id):
            detail = job["error"] or "\n".join(
                f"{o['name']} {o['width']}x{o['height']}" for o in job["outputs"])
            table.add_row(job["id"][:8], Text(job["input"]), job["status"],
                          str(job["attempts"]), Text(job["worker"] or ""), Text(detail))
        answer.print(table)

    @cli.command()
    @url_option
    def login(url: str | None, api_key: str | None) -> None:
        """Print a one-time link that opens the dashboard signed in with your key."""
        link, ttl = client_for(url, api_key).login_link()
        console.print(f"a dashboard link that signs in as your key (works once, within "
                      f"{ttl // 60} minutes):")
        click.echo(link)

    @cli.command()
    @click.argument("batch_ids", metavar="BATCH...", nargs=-1, required=True)
    @url_option
    def cancel(batch_ids: tuple[str, ...], url: str | None, api_key: str | None) -> None:
        """Cancel the jobs of one or more batches that have not started; running jobs
        finish and finished ones keep their outputs."""
        client = client_for(url, api_key)
        for batch_id in batch_ids:
            batch = client.json("DELETE", f"/api/v1/batches/{batch_id}")
            n = batch["cancelled_jobs"]
            left = ", ".join(f"{count} {status}" for status, count in batch["counts"].items()
                             if count and status != "cancelled")
            console.print(f"batch {batch['id']} {batch['status']}: {n} job"
                          f"{'' if n == 1 else 's'} cancelled"
                          + (f"; left as they are: {left}" if left else ""))

    @cli.command()
    @click.argument("batch_ids", metavar="BATCH...", nargs=-1, required=True)
    @click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                  required=True, help="Folder to write outputs into: <output>/<input>.<ext>, "
                                      "the input's folders kept (thumb/day1/IMG_0001.webp).")
    @url_option
    def fetch(batch_ids: tuple[str, ...], out_dir: Path, url: str | None,
              api_key: str | None) -> None:
        """Download every output of one or more batches (all that one `submit` made)."""
        download_outputs(client_for(url, api_key), batch_ids, out_dir)
