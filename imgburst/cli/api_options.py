"""What every command that talks to the API takes: `--url` and `--api-key`, and the client
they make (the running `imgburst up`'s URL and key when neither is given). Kept free of
the terminal's libraries: `imgburst submit` starts sending before it loads them."""

from __future__ import annotations

from collections.abc import Callable

import click

from imgburst.cli.api_client import Client
from imgburst.cli.console import load_settings
from imgburst.cli.local_key import read_local_key
from imgburst.cli.local_url import default_url, elsewhere_hint


def api_options(fn: Callable[..., None]) -> Callable[..., None]:
    fn = click.option("--api-key", envvar="IMGBURST_API_KEY", default=None,
                      help="Bearer key (default IMGBURST_API_KEY, else the key `imgburst "
                           "up` keeps in $IMGBURST_HOME/api-key).")(fn)
    return click.option("--url", default=None,
                        help="API URL (default IMGBURST_URL, else the running `imgburst up`'s, "
                             "else http://127.0.0.1:8000).")(fn)


def client_for(url: str | None, api_key: str | None) -> Client:
    settings = load_settings()
    client = Client(url or default_url(settings), api_key or read_local_key(settings.home))
    client.hint = lambda: elsewhere_hint(settings.home, client.url)
    return client
