"""`imgburst keygen`, `mysql-check`: an operator's small tools (API keys, the database)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from sqlalchemy import exc

from imgburst.cli.console import console, load_settings
from imgburst.cli.local_key import write_key_file
from imgburst.core.keys import digest, generate_key
from imgburst.core.store import make_engine


@click.command()
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep an admin key in this file (mode 600) instead of printing one: "
                   "made once, kept after; the API reads it with IMGBURST_ADMIN_KEY_FILE "
                   "(docker compose's first run).")
def keygen(path: Path | None) -> None:
    """Make a new API key and the entry that configures it (only its SHA-256)."""
    if path is not None:
        try:
            made = write_key_file(path)
        except OSError as exc:
            console.print(f"[red]Can't keep a key in {escape(str(path))}[/red]: {exc.strerror}; "
                          "give a path this user may write (a volume mounted there?)")
            raise SystemExit(1) from None
        console.print(f"{'made' if made else 'kept'} the admin key in {path} (the API reads it "
                      "with IMGBURST_ADMIN_KEY_FILE; `imgburst login` prints a dashboard "
                      "link)", markup=False)
        return
    key = generate_key()
    console.print("Give the key to its client (IMGBURST_API_KEY or --api-key); put the entry "
                  "in IMGBURST_API_KEYS, or IMGBURST_ADMIN_KEYS for an admin, optionally as "
                  "owner=sha256:...")
    click.echo(f"key:   {key}")
    click.echo(f"entry: sha256:{digest(key)}")


@click.command("mysql-check")
def mysql_check() -> None:
    """The original sample's round trip against the bound MySQL: create a table, insert,
    select, commit. Prints user, host and database; never the password."""
    settings = load_settings()
    if settings.mysql is None:
        console.print("[red]MYSQL_HOST is not set[/red]: bind a database (MYSQL_HOST, "
                      "MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE, MYSQL_SSL)")
        raise SystemExit(2)
    m = settings.mysql
    click.echo(f"user: {m.user}\nhost: {m.host}:{m.port}\ndatabase: {m.database}\n"
               f"tls: {'on' if m.ssl else 'off'}")
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS test")
            conn.exec_driver_sql("CREATE TABLE test (id INT PRIMARY KEY, name VARCHAR(20))")
            conn.exec_driver_sql("INSERT INTO test VALUES (1, 'hoge')")
            conn.exec_driver_sql("INSERT INTO test VALUES (2, 'foo'), (3, 'bar')")
            rows = conn.exec_driver_sql("SELECT id, name FROM test ORDER BY id").all()
    except exc.OperationalError as error:
        reason = error.orig.args[-1] if error.orig is not None and error.orig.args else error
        console.print(f"[red]cannot use MySQL at {escape(m.host)}:{m.port}[/red]: "
                      f"{escape(str(reason))}")
        console.print("Check MYSQL_HOST and MYSQL_PORT, the firewall rules, and the binding's "
                      "user and password.")
        raise SystemExit(1) from None
    finally:
        engine.dispose()
    for row in rows:
        click.echo(f"{row[0]} {row[1]}")
    click.echo("committed")
