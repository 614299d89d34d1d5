"""The `imgburst` program: one click group whose commands load only when run.

Each command lives in the module named below, with its own imports; `imgburst --help`
lists them from this table without importing any (a worker starting for a spike, or a
liveness probe, loads only its own command's code). A test holds each summary here to
the command's own docstring.
"""

from __future__ import annotations

import gc
import importlib
import sys

import click

from imgburst import __version__

# name -> (module:function, the one-line summary `--help` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("imgburst.cli.up:up", "Start everything on one machine: Redis (embedded if "
           "REDIS_URL is unset), API, worker."),
    "submit": ("imgburst.cli.submit:submit", "Upload images (files or folders) as one batch: "
               "each image's job is queued as it arrives; run again, it continues an "
               "interrupted upload and sends only what is missing."),
    "preview": ("imgburst.cli.preview:preview", "Render one output of a recipe for one small "
                "image (up to the API's preview size), as a batch would, and write it to a "
                "file."),
    "presets": ("imgburst.cli.preview:presets", "List the named recipes a batch may use "
                "(`submit --preset NAME`) and what each makes."),
    "status": ("imgburst.cli.batches:status", "Show recent batches, or one batch and its "
               "jobs."),
    "fetch": ("imgburst.cli.batches:fetch", "Download every output of one or more batches "
              "(all that one `submit` made)."),
    "cancel": ("imgburst.cli.batches:cancel", "Cancel the jobs of one or more batches that "
               "have not started; running jobs finish and finished ones keep their outputs."),
    "login": ("imgburst.cli.batches:login", "Print a one-time link that opens the dashboard "
              "signed in with your key."),
    "loadgen": ("imgburst.cli.loadgen:loadgen", "Generate load against an imgburst API (open "
                "model, or closed with --clients), then report."),
    "traffic": ("imgburst.cli.traffic:traffic", "Count which API version answers `/version` "
                "(the Istio routing demo, measured)."),
    "api": ("imgburst.cli.api:api", "Serve the HTTP API and dashboard (waitress)."),
    "worker": ("imgburst.cli.worker:worker", "Run a Celery worker on the `images` queue (and "
               "`preview`, for recipe previews)."),
    "scaler": ("imgburst.cli.scaler:scaler", "Run the burst scaler (SCALER_BACKEND: local "
               "processes or Kubernetes pods)."),
    "router": ("imgburst.cli.router:router", "Route HTTP between local API versions as "
               "Istio's VirtualService says."),
    "keygen": ("imgburst.cli.ops:keygen", "Make a new API key and the entry that configures "
               "it (only its SHA-256)."),
    "mysql-check": ("imgburst.cli.ops:mysql_check", "The original sample's round trip against "
                    "the bound MySQL: create a table, insert, select, commit. Prints user, "
                    "host and database; never the password."),
    "alive": ("imgburst.cli.probe:alive", "Exit 0 if this pod's worker or scaler loop turned "
              "within the last --within seconds (a Kubernetes liveness probe: `exec: "
              "[imgburst, alive, worker]`), else 1."),
}


class LazyGroup(click.Group):
    """click's documented lazy-loading group: a command's module is imported when it runs
    (or its own --help is asked for), never to list the commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, name = COMMANDS[cmd_name][0].partition(":")
        # Imports make many objects that live as long as the process, and no garbage:
        # the collector's passes over them while importing, and its last one at exit,
        # are ~15 ms of a short command's run. Frozen, the later passes skip them
        # (Python's documented `gc.freeze`, which forked workers also gain from).
        gc.disable()
        try:
            command = getattr(importlib.import_module(module), name)
        finally:
            gc.freeze()
            gc.enable()
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.Command(name, help=summary).get_short_help_str(limit))
                for name, (_, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="imgburst")
def cli() -> None:
    """imgburst: submit batches of images, process them on Celery workers, burst when busy."""


def main() -> None:
    try:
        cli(prog_name="imgburst")
    except KeyboardInterrupt:
        sys.exit(130)
