"""`imgburst alive`: the pods' liveness probe (kept light: it runs every 30 s)."""

from __future__ import annotations

import click

from imgburst.cli.console import console, load_settings
from imgburst.core.alive import ROLES, seconds_since


@click.command()
@click.argument("role", type=click.Choice(ROLES))
@click.option("--within", type=click.FloatRange(1, 86400), default=60, show_default=True,
              help="Seconds: a loop quieter than this counts as stuck.")
def alive(role: str, within: float) -> None:
    """Exit 0 if this pod's worker or scaler loop turned within the last --within seconds
    (a Kubernetes liveness probe: `exec: [imgburst, alive, worker]`), else 1."""
    age = seconds_since(load_settings().home, role)
    if age is None:
        console.print(f"no {role} has run here yet", markup=False)
        raise SystemExit(1)
    if age > within:
        console.print(f"the {role}'s loop last turned {age:.0f} s ago (more than {within:g} s)",
                      markup=False)
        raise SystemExit(1)
