"""What every command shares: the consoles (messages on stderr, answers on stdout), the
settings, and the start-up refusals that say what to do next.

The consoles are made on first use (`from imgburst.cli.console import console`, or
`stderr()`): importing rich is ~25 ms of a command's start, which `imgburst submit` spends
sending its first image instead, and a worker starting for a spike needs none of it.
"""

from __future__ import annotations

import errno
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from imgburst.core.settings import Settings, SettingsError

if TYPE_CHECKING:
    from rich.console import Console

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@cache
def stderr() -> Console:
    """Messages: on stderr, each one line in logs."""
    from rich.console import Console
    return Console(stderr=True, soft_wrap=True)


@cache
def stdout() -> Console:
    """What a query prints (status's tables): stdout, for pipes."""
    from rich.console import Console
    return Console(soft_wrap=True)


def __getattr__(name: str) -> Any:
    """`console` (stderr) and `answer` (stdout), as the commands import them."""
    if name == "console":
        return stderr()
    if name == "answer":
        return stdout()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """`text` shown as it is in a rich message (no markup)."""
    from rich.markup import escape
    return escape(text)


def load_settings() -> Settings:
    """Settings from the environment, or a clear message and exit 2."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        stderr().print(f"[red]Configuration error[/red] {escape(str(exc))}")
        stderr().print("Fix the variable (or unset it to use the default) and try again.")
        raise SystemExit(2) from None


def store_unreachable(settings: Settings, exc: Exception) -> SystemExit:
    """A start-up that can't open the job store: say where and what to check, exit 2."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    stderr().print(f"[red]The job store can't be opened[/red] "
                   f"({escape(settings.describe_store())}): {escape(reason)}")
    stderr().print("Check the MYSQL_* variables (the binding secret) and that the server is "
                   "up; `imgburst mysql-check` tests them.")
    return SystemExit(2)


def require_redis(settings: Settings, why: str) -> None:
    """Stop, saying what to do, when REDIS_URL is unset: only `imgburst up` embeds a Redis."""
    if settings.redis_url is None:
        stderr().print(f"[red]REDIS_URL is not set[/red]: {why}. Set it (e.g. "
                       "redis://127.0.0.1:6379/0), or run `imgburst up`, which starts an "
                       "embedded Redis and sets it for you.")
        raise SystemExit(2)


BIND_ADVICE = {
    errno.EADDRINUSE: "something else listens there (another `imgburst up`?): stop it, or "
                      "pick another port with --port or IMGBURST_PORT",
    errno.EACCES: "ports below 1024 need privileges: pick another with --port or "
                  "IMGBURST_PORT",
    errno.EADDRNOTAVAIL: "that is not an address of this machine: check --host",
}


def cannot_listen(host: str, port: int, exc: OSError) -> SystemExit | None:
    """A server socket that can't be bound: say why and what to do, exit 2 (None for any
    other OSError, which is not the user's to fix)."""
    advice = BIND_ADVICE.get(exc.errno or 0)
    if advice is None:
        return None
    stderr().print(f"[red]Can't listen on {host}:{port}[/red]: {exc.strerror}; {advice}")
    return SystemExit(2)


ALEMBIC_PREAMBLE = ("Context impl ", "Will assume ")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Alembic lists each of its plugins, its dialect and its DDL mode at INFO on every
    # start of every process: lines that say nothing about this service. Its migration
    # lines ("Running upgrade ...") stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").addFilter(
        lambda record: not record.getMessage().startswith(ALEMBIC_PREAMBLE))
