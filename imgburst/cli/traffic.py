"""`imgburst traffic`: which API version answers, counted (the Istio routing demo,
measured against its expected split)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from imgburst.cli import splits as t
from imgburst.cli.console import console, load_settings
from imgburst.cli.local_url import default_url


@click.command()
@click.argument("url", required=False)
@click.option("-n", "count", type=click.IntRange(1, 1_000_000), default=500, show_default=True)
@click.option("-H", "--header", "headers", multiple=True, help="e.g. -H 'user: yoichi'")
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--expect", default=None,
              help="Expected shares, e.g. v1=90,v2=10; exit 1 if one lies outside its "
                   "99.9% interval.")
def traffic(url: str | None, count: int, headers: tuple[str, ...], concurrency: int,
            expect: str | None) -> None:
    """Count which API version answers `/version` (the Istio routing demo, measured).

    \b
    URL: where to send them, `/version` appended (default: IMGBURST_URL, else the URL of
    the `imgburst up` that runs with this IMGBURST_HOME, else http://127.0.0.1:8000; in
    the cluster, the Istio ingress gateway's address)."""
    try:
        parsed = dict(t.parse_header(h) for h in headers)
        expected = t.parse_expect(expect) if expect else {}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    target = t.version_url(url or default_url(load_settings()))
    with console.status(f"{count} requests to {target} ..."):
        counts = t.send(target, count, parsed, concurrency)
    table = Table(title=f"{count} requests to {target}" + (
        f" with {', '.join(headers)}" if headers else ""))
    for column in ("version", "count", "share", "99.9% interval", "expected", ""):
        table.add_column(column, justify="left" if column in ("version", "") else "right")
    results = t.shares(counts, expected)
    for r in results:
        table.add_row(escape(r.version), str(r.count), f"{r.share:.1%}",
                      f"{r.low:.1%} - {r.high:.1%}",
                      "" if r.expected is None else f"{r.expected:.0%}",
                      "" if r.expected is None else ("ok" if r.ok else "[red]outside[/red]"))
    console.print(table)
    if counts["error"] == count:
        console.print(f"[red]no request to {escape(target)} was answered[/red]: is the API running "
                      "there? (`imgburst up --versions v1.111111111,v2.222222222` serves two)")
        raise SystemExit(1)
    if not all(r.ok for r in results):
        console.print("[red]the observed split does not match --expect[/red]")
        raise SystemExit(1)
