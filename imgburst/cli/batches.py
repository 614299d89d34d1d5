"""`imgburst status`, `cancel`, `fetch`, `login`: a user's batches, read and acted on."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column, Table
from rich.text import Text

from imgburst.cli.api_client import ApiError, Client, input_place, job_counts
from imgburst.cli.api_options import api_options, client_for
from imgburst.cli.console import answer, console


@click.command()
@click.argument("batch_id", required=False)
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True,
              help="How many of the newest batches to list.")
@api_options
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
            done = f"{c['succeeded']}/{b['jobs']}" + (
                " so far" if b["status"] == "receiving" else "")
            table.add_row(label, b["status"] + (" (cut)" if b.get("closed_by") == "idle" else ""),
                          done, str(c["failed"]), _when(b["created_at"]))
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
    if batch["status"] == "receiving":
        answer.print(f"receiving: {batch['jobs']} images so far, {done_of(c)} done; it takes "
                     "more until its upload closes it (or IMGBURST_RECEIVE_IDLE_S after its "
                     "last image)")
    elif batch.get("closed_by") == "idle":
        answer.print(f"cut: its upload stopped after {batch['jobs']} images and it was closed "
                     "for idleness; `imgburst submit` on the same folder sends the rest")
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

@click.command()
@api_options
def login(url: str | None, api_key: str | None) -> None:
    """Print a one-time link that opens the dashboard signed in with your key."""
    link, ttl = client_for(url, api_key).login_link()
    console.print(f"a dashboard link that signs in as your key (works once, within "
                  f"{ttl // 60} minutes):")
    click.echo(link)

@click.command()
@click.argument("batch_ids", metavar="BATCH...", nargs=-1, required=True)
@api_options
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

EXISTING = ("skip", "overwrite", "rename")


@click.command()
@click.argument("batch_ids", metavar="BATCH...", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder to write outputs into: <output>/<input>.<ext>, "
                                  "the input's folders kept (thumb/day1/IMG_0001.webp).")
@click.option("--existing", type=click.Choice(EXISTING), default="skip", show_default=True,
              help="A file already there (a fetch run before): keep it (skip), replace it "
                   "(overwrite), or write beside it as <stem>-<job id>.<ext> (rename).")
@api_options
def fetch(batch_ids: tuple[str, ...], out_dir: Path, existing: str, url: str | None,
          api_key: str | None) -> None:
    """Download every output of one or more batches (all that one `submit` made).

    Two inputs with the same path (in two batches, or twice in one) both land: the
    second as <stem>-<its job id>.<ext>, and fetch says which. A file that was there
    before is kept (--existing skip), so running fetch again completes a download."""
    download_outputs(client_for(url, api_key), batch_ids, out_dir, existing)


def download_outputs(client: Client, batch_ids: tuple[str, ...] | list[str],
                     out_dir: Path, existing: str = "skip") -> None:
    """Every output of the batches under `out_dir` (<output>/<input's folders>/<stem>.<ext>),
    with a bar, then what was skipped or renamed, and which jobs gave none and why
    (failed, cancelled, not done yet)."""
    every = {batch_id: list(client.jobs(batch_id)) for batch_id in batch_ids}
    jobs = [j for batch in every.values() for j in batch if j["outputs"]]
    total = sum(len(j["outputs"]) for j in jobs)
    if not total:
        raise ApiError(f"batch{'es' if len(batch_ids) > 1 else ''} {' '.join(batch_ids)} "
                       f"{'have' if len(batch_ids) > 1 else 'has'} no outputs yet "
                       f"(imgburst status {batch_ids[0]})")
    written: set[Path] = set()
    skipped: list[Path] = []
    renamed: list[str] = []  # what was written under another name, and why
    with Progress(TextColumn("downloading"), BarColumn(), MofNCompleteColumn(),
                  console=console) as progress:
        task = progress.add_task("fetch", total=total)
        for job in jobs:
            folders, stem = input_place(job)
            for output in job["outputs"]:
                progress.advance(task)
                ext = {"jpeg": "jpg"}.get(output["format"], output["format"])
                target = out_dir / output["name"] / folders / f"{stem}.{ext}"
                beside = target.with_name(f"{stem}-{job['id'][:8]}.{ext}")
                if target in written:  # two inputs with the same path, in this fetch
                    renamed.append(f"{job['input']} of batch {job['batch_id']} has the same "
                                   f"path as another input: its {output['name']} is {beside}")
                    target = beside
                elif target.exists() and existing == "skip":
                    skipped.append(target)
                    continue
                elif target.exists() and existing == "rename":
                    renamed.append(f"{target} was there: written as {beside}")
                    target = beside
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(client.request("GET", output["url"]).content)
                written.add(target)
    console.print(f"wrote {len(written)} files under {out_dir}", markup=False)
    if skipped:
        console.print(f"kept {len(skipped)} files that were there already, e.g. {skipped[0]} "
                      "(--existing overwrite replaces them, --existing rename writes beside "
                      "them)", markup=False)
    for line in renamed[:5]:
        console.print(f"renamed: {line}", markup=False)
    if len(renamed) > 5:
        console.print(f"... and {len(renamed) - 5} more renamed", markup=False)
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


def done_of(counts: dict[str, int]) -> int:
    """Jobs that reached a final status."""
    return counts["succeeded"] + counts["failed"] + counts["cancelled"]


def _when(timestamp: str) -> str:
    """An API timestamp (ISO 8601, UTC) to the second, date and time apart: a narrow
    terminal wraps it at the space instead of cutting it to the year and month."""
    return timestamp[:19].replace("T", " ")
