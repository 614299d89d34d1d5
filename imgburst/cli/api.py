"""`imgburst api`: the HTTP API and dashboard, served by waitress."""

from __future__ import annotations

import click
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from imgburst.api import create_app
from imgburst.api.server import create_server, serve
from imgburst.cli.console import (
    cannot_listen,
    console,
    load_settings,
    require_redis,
    setup_logging,
    store_unreachable,
)
from imgburst.core.malloc import keep_freed_heap
from imgburst.core.settings import SettingsError

API_HEAP_RETAIN_MB = 256  # freed heap the API keeps: a few upload bodies (64 MB at most each)


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), help="Default IMGBURST_PORT (8000).")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True)
def api(host: str, port: int | None, threads: int) -> None:
    """Serve the HTTP API and dashboard (waitress)."""
    setup_logging()
    settings = load_settings()
    require_redis(settings, "the API queues each job there")
    keep_freed_heap(API_HEAP_RETAIN_MB)  # each upload's body reuses the last one's memory
    try:
        app = create_app(settings)
    except SettingsError as exc:
        console.print(f"[red]Configuration error[/red] {escape(str(exc))}")
        raise SystemExit(2) from None
    except SQLAlchemyError as exc:
        raise store_unreachable(settings, exc) from None
    app.extensions["imgburst"].store.checkpoint_in_background()  # never in a request
    port = port or settings.port
    try:
        server = create_server(app, host, port, threads, settings.max_upload_mb)
    except OSError as exc:
        stop = cannot_listen(host, port, exc)
        if stop is None:
            raise
        raise stop from None
    console.print(escape(f"imgburst API on http://{host}:{port} (store: "
                         f"{settings.describe_store()}; blobs: {settings.describe_blobs()})"))
    serve(server)
    app.extensions["imgburst"].store.dispose()
    console.print("imgburst API stopped")
