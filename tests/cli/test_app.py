"""The `imgburst` program itself: its table of lazily loaded commands, and commands run
in-process with click's CliRunner (no services: these run on a bare machine)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from imgburst.cli.app import COMMANDS, cli
from imgburst.core.alive import touch


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_commands_own(name):
    """`--help` lists the table's summaries without importing a command: each must be the
    command's own docstring, or the list would drift from what `imgburst X --help` says."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    own = " ".join(command.help.split("\n\n")[0].split())
    assert COMMANDS[name][1] == own


def test_help_lists_every_command_without_importing_one():
    probe = ("import sys; from imgburst.cli.app import cli, COMMANDS\n"
             "try:\n    cli(['--help'], prog_name='imgburst')\nexcept SystemExit:\n    pass\n"
             "loaded = [m for m in sys.modules if m.startswith(('imgburst.cli.', 'imgburst.api',"
             " 'imgburst.worker', 'imgburst.vk', 'celery', 'sqlalchemy'))]\n"
             "print('LOADED', sorted(set(loaded) - {'imgburst.cli.app'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "LOADED []" in out, out
    for name in COMMANDS:
        assert f"  {name} " in out


@pytest.mark.parametrize("module", ["imgburst.cli.submit", "imgburst.cli.worker"])
def test_submit_and_worker_start_without_the_terminal_libraries(module):
    """`submit` sends its first image before rich loads (~25 ms of its start, while the
    workers wait for that image); a worker started for a spike never needs it."""
    probe = (f"import sys, {module}\n"
             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert "LOADED []" in out, out


def test_keygen_prints_a_key_and_the_digest_that_configures_it():
    result = CliRunner().invoke(cli, ["keygen"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    key, entry = lines["key"].strip(), lines["entry"].strip()
    assert entry == "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def test_alive_answers_from_the_loops_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBURST_HOME", str(tmp_path))
    runner = CliRunner()
    never = runner.invoke(cli, ["alive", "worker", "--within", "60"])
    assert never.exit_code == 1 and "no worker has run here yet" in never.output
    touch(tmp_path, "worker")
    assert runner.invoke(cli, ["alive", "worker", "--within", "60"]).exit_code == 0


def test_submit_refuses_a_folder_without_images_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGBURST_HOME", str(tmp_path / "home"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    result = CliRunner().invoke(cli, ["submit", str(tmp_path / "notes"),
                                      "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "no image files in the given folders" in result.output


def test_traffic_refuses_a_malformed_expectation(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGBURST_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["traffic", "http://127.0.0.1:9", "--expect", "v1=ninety"])
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_an_unknown_command_is_refused_by_name():
    result = CliRunner().invoke(cli, ["sumbit"])
    assert result.exit_code == 2 and "No such command 'sumbit'" in result.output
