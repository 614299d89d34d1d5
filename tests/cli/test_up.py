"""`imgburst up` on embedded defaults, then `submit --wait`, `status`, `fetch`, Ctrl-C."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from conftest import free_port, http_ok, start_live_stack, wait_until
from helpers import ctrl_c, descendants
from PIL import Image

from imgburst.cli import local_url
from imgburst.core.keys import digest
from imgburst.core.reconcile import EPOCH_KEY
from imgburst.core.settings import Settings
from imgburst.core.synthetic import photo_bytes


def imgburst(*args: str, env: dict[str, str], timeout: float = 120,
             **popen: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgburst.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.mark.services
@pytest.mark.slow
def test_up_submit_status_fetch_and_clean_stop(tmp_path):
    port = free_port()
    # no REDIS_URL: `up` must embed Redis
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "IMGBURST_HOME": str(tmp_path / "var"), "IMGBURST_PORT": str(port)}
    log = (tmp_path / "up.log").open("w")
    # started with SIGINT ignored, as a shell without job control starts `imgburst up &`:
    # Ctrl-C (`kill -INT`) must stop it all the same
    up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up", "--concurrency", "2"],
                          env=env, stdout=log, stderr=subprocess.STDOUT,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/readyz") or up.poll() is not None, 90,
                   "imgburst up to be ready")
        assert up.poll() is None, (tmp_path / "up.log").read_text()
        wait_until(lambda: "stop:      Ctrl-C" in (tmp_path / "up.log").read_text(), 30,
                   "the whole banner")
        banner = (tmp_path / "up.log").read_text()
        for noise in ("setup plugin", "Context impl", "non-transactional DDL"):
            assert noise not in banner, f"Alembic's {noise!r} lines are noise at start-up"
        assert f"another folder: IMGBURST_HOME={tmp_path / 'var'} imgburst submit" in banner
        key_file = tmp_path / "var" / "api-key"
        key = key_file.read_text().strip()
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert listening_addresses(port) == {"127.0.0.1"}  # this machine only, by default
        assert key not in banner  # made on first run, never printed: the link has a code
        assert "#login=" not in banner  # and the link is not written to a log either
        assert f"dashboard: {url}/ (to sign in, run `imgburst login` in a terminal" in banner
        login = f"{url}/api/v1/login"
        first = imgburst("login", env=env)
        code = re.fullmatch(rf"{re.escape(url)}/#login=([\w-]+)\n", first.stdout)
        assert code, first.stdout + first.stderr
        assert requests.post(login, json={"code": code[1]}, timeout=5).json() == {"key": key}
        assert requests.post(login, json={"code": code[1]}, timeout=5).status_code == 404
        another = imgburst("login", env=env)
        assert another.returncode == 0 and key not in another.stdout + another.stderr
        code = re.fullmatch(rf"{re.escape(url)}/#login=([\w-]+)\n", another.stdout)
        assert code and "works once" in another.stderr, another.stdout + another.stderr
        assert requests.post(login, json={"code": code[1]}, timeout=5).json() == {"key": key}
        anonymous = requests.get(f"{url}/api/v1/batches", timeout=5)
        assert anonymous.status_code == 401  # keys are on by default
        assert requests.get(f"{url}/api/v1/batches", timeout=5,
                            headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert key not in Path(f"/proc/{up.pid}/environ").read_bytes().decode(errors="replace")
        empty = imgburst("status", env=env)
        assert empty.returncode == 0 and "no batches yet" in empty.stderr, empty.stderr
        photos = tmp_path / "photos"
        (photos / "sub").mkdir(parents=True)
        (photos / "a.jpg").write_bytes(photo_bytes(1, 1200, 900))
        (photos / "sub" / "b.png").write_bytes(photo_bytes(2, 300, 600, "PNG"))
        (photos / "notes.md").write_text("not an image, skipped by suffix")
        bad_recipe = tmp_path / "recipe.json"
        bad_recipe.write_text('{"outputs": [{"name": "a", "quality": 500}]}')
        result = imgburst("submit", str(photos), "--recipe", str(bad_recipe), env=env)
        assert result.returncode == 1
        assert "outputs[0].quality must be 1..100 (field: outputs[0].quality)" in result.stderr
        result = imgburst("submit", str(photos), "--wait", env=env)
        assert result.returncode == 0, result.stderr
        batch_id = result.stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{32}", batch_id), result.stdout  # nothing else on stdout
        assert "succeeded: 2 succeeded, 0 failed" in result.stderr
        status = imgburst("status", batch_id, env=env)
        assert status.returncode == 0 and "succeeded" in status.stdout  # pipes take the table
        assert "medium 1024x768" in status.stdout  # an output whole on its line at 80 columns
        assert max(map(len, status.stdout.splitlines())) <= 80, status.stdout
        unset = {k: v for k, v in env.items() if k != "IMGBURST_PORT"}  # no --url, no port:
        found = imgburst("status", batch_id, env=unset)  # the running `up`'s URL is found
        assert found.returncode == 0 and batch_id in found.stdout, found.stderr
        assert (tmp_path / "var" / "api-url").read_text() == f"{url}\n"
        wrong = imgburst("status", env=env | {"IMGBURST_API_KEY": "ib_not-this-one"})
        assert wrong.returncode == 1 and "refused the key" in wrong.stderr, wrong.stderr
        lost = imgburst("status", env=unset | {"IMGBURST_HOME": str(tmp_path / "elsewhere"),
                                               "IMGBURST_URL": f"http://127.0.0.1:{free_port()}"})
        assert lost.returncode == 1, lost.stderr  # another folder: says which `up` runs
        assert f"an `imgburst up` runs with another home (IMGBURST_HOME={tmp_path / 'var'} " \
               f"at {url})" in " ".join(lost.stderr.split()), lost.stderr
        keyless = imgburst("status", env=env | {"IMGBURST_HOME": str(tmp_path / "elsewhere")})
        assert keyless.returncode == 1 and "wants a key" in keyless.stderr, keyless.stderr
        fetch = imgburst("fetch", batch_id, "--out", str(tmp_path / "out"), env=env)
        assert fetch.returncode == 0, fetch.stderr
        assert Image.open(tmp_path / "out" / "thumb" / "a.webp").size == (256, 192)
        assert Image.open(tmp_path / "out" / "medium" / "sub" / "b.jpg").size == (300, 600)
        preset = imgburst("submit", str(photos / "a.jpg"), "--preset", "avatar", "--wait",
                          env=env)
        assert preset.returncode == 0 and "1 succeeded" in preset.stderr, preset.stderr
        assert ": 1 job queued" in preset.stderr, preset.stderr
        fetched = imgburst("fetch", preset.stdout.strip().splitlines()[-1], "--out",
                           str(tmp_path / "avatars"), env=env)
        assert fetched.returncode == 0, fetched.stderr
        assert Image.open(tmp_path / "avatars" / "avatar-2x" / "a.webp").size == (256, 256)
        (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
        mixed = imgburst("submit", str(photos / "a.jpg"), str(tmp_path / "broken.jpg"),
                         "--out", str(tmp_path / "partial"), env=env)  # wait, then fetch
        assert mixed.returncode == 1 and "partial: 1 succeeded, 1 failed" in mixed.stderr
        assert "broken.jpg: corrupt JPEG" in mixed.stderr, mixed.stderr
        assert "wrote 2 files" in mixed.stderr, mixed.stderr
        assert "no outputs from 1 job (1 failed)" in mixed.stderr, mixed.stderr
        assert "imgburst fetch" not in mixed.stderr  # done already: no hint to do it
        assert Image.open(tmp_path / "partial" / "thumb" / "a.webp").size == (256, 192)
        assert re.fullmatch(r"[0-9a-f]{32}\n", mixed.stdout), mixed.stdout
        many = tmp_path / "many"
        many.mkdir()
        for i in range(60):
            (many / f"p{i:02d}.jpg").write_bytes(photo_bytes(i, 64, 48))
        few_fds = imgburst(  # as on macOS (256): fewer open files allowed than sent
            "submit", str(many), env=env,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40)))
        assert few_fds.returncode == 0, few_fds.stderr
        assert "60 jobs queued" in few_fds.stderr, few_fds.stderr
        listing = imgburst("status", env=env)
        assert batch_id in listing.stdout  # whole, to copy, even 80 columns wide
        created = requests.get(f"{url}/api/v1/batches/{batch_id}", timeout=5, headers={
            "Authorization": f"Bearer {key}"}).json()["created_at"]
        assert created[:10] in listing.stdout and created[11:19] in listing.stdout  # not cut
        children = descendants(up.pid)
        assert len(children) >= 3  # redis, api, worker (+ its pool)
    finally:
        assert ctrl_c(up, tmp_path / "up.log") == 0, (tmp_path / "up.log").read_text()
        log.close()
    assert not (tmp_path / "var" / "api-url").exists()  # a stopped `up` is not found
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
    assert not alive, f"processes left running after Ctrl-C: {alive}"
    assert "stopped" in (tmp_path / "up.log").read_text()


def test_submit_reports_api_errors_and_unreachable(tmp_path, base_env):
    (tmp_path / "a.jpg").write_bytes(photo_bytes(1, 50, 50))
    env = base_env | {"IMGBURST_URL": f"http://127.0.0.1:{free_port()}"}
    result = imgburst("submit", str(tmp_path / "a.jpg"), env=env)
    assert result.returncode == 1 and "can't reach the imgburst API" in result.stderr
    assert "imgburst up" in result.stderr
    result = imgburst("submit", str(tmp_path / "a.jpg"), "--recipe", str(tmp_path / "a.jpg"),
                      env=env)
    assert result.returncode == 2 and "not JSON" in result.stderr


@pytest.mark.services
@pytest.mark.slow
def test_up_stops_everything_on_sigterm(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "IMGBURST_HOME": str(tmp_path / "var"), "IMGBURST_PORT": str(port)}
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up", "--concurrency", "1"],
                              env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: "imgburst is up" in log.read_text() or up.poll() is not None, 90,
                   "imgburst up to be ready")
        children = descendants(up.pid)
        assert len(children) >= 4, log.read_text()  # redis, api, worker, scaler
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0, log.read_text()
    assert not (tmp_path / "var" / "api-url").exists()  # a stopped `up` is not found
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
    assert not alive, f"processes left running after SIGTERM: {alive}"


@pytest.mark.services
@pytest.mark.slow
def test_up_no_auth_says_so_loudly(tmp_path):
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "IMGBURST_HOME": str(tmp_path / "var"), "IMGBURST_PORT": str(port)}
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "up", "--no-auth",
                               "--concurrency", "1"], env=env, stdout=out,
                              stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "imgburst is up" in log.read_text() or up.poll() is not None,
                       90, "imgburst up to be ready")
            assert "AUTHENTICATION IS OFF" in log.read_text()
            assert not (tmp_path / "var" / "api-key").exists()
            assert requests.get(f"http://127.0.0.1:{port}/api/v1/batches",
                                timeout=5).status_code == 200
        finally:
            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=60) == 0, log.read_text()


def test_keygen_prints_a_key_and_only_its_digest_as_the_entry():
    result = imgburst("keygen", env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    key = re.search(r"^key:\s+(\S+)$", result.stdout, re.M).group(1)
    entry = re.search(r"^entry:\s+(\S+)$", result.stdout, re.M).group(1)
    assert entry == f"sha256:{digest(key)}" and len(key) >= 40


def test_ctrl_c_while_waiting_leaves_the_batch_and_says_how_to_follow_it(base_env,
                                                                        start_service,
                                                                        tmp_path):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_URL": f"http://127.0.0.1:{port}"}
    start_service(env, "api", "--host", "127.0.0.1")  # no worker: the batch stays queued
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "the API")
    (tmp_path / "a.jpg").write_bytes(photo_bytes(1, 64, 48))
    submit = subprocess.Popen(  # SIGINT as a terminal's Ctrl-C delivers it
        [sys.executable, "-m", "imgburst.cli", "submit", str(tmp_path / "a.jpg"), "--wait"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    while not seen or "queued" not in seen[-1]:  # the upload bar's lines come first
        seen.append(submit.stderr.readline())
        assert seen[-1] and len(seen) < 50, seen
    queued = seen[-1]
    assert "1 job queued" in queued, seen
    submit.send_signal(signal.SIGINT)
    out, err = submit.communicate(timeout=30)
    batch_id = queued.split()[1].rstrip(":")
    assert submit.returncode == 130, err
    assert f"the batch goes on: imgburst status {batch_id}" in err, err
    assert out == f"{batch_id}\n"  # stdout is the id alone: the bar went to stderr
    assert requests.get(f"http://127.0.0.1:{port}/api/v1/batches/{batch_id}",
                        timeout=5).json()["status"] == "queued"
    assert f"imgburst cancel {batch_id}" in err, err  # what the hint says works
    cancel = imgburst("cancel", batch_id, env=env)
    assert cancel.returncode == 0, cancel.stderr
    assert f"batch {batch_id} cancelled: 1 job cancelled" in cancel.stderr, cancel.stderr
    again = imgburst("cancel", batch_id, env=env)
    assert again.returncode == 0 and ": 0 jobs cancelled" in again.stderr, again.stderr
    unknown = imgburst("cancel", "f" * 32, env=env)
    assert unknown.returncode == 1 and "not found" in unknown.stderr.lower(), unknown.stderr


def test_services_without_redis_say_what_to_set(tmp_path):
    env = {"PATH": os.environ["PATH"], "IMGBURST_HOME": str(tmp_path), "IMGBURST_AUTH": "off"}
    for command, why in (("api", "the API queues"), ("worker", "the worker takes"),
                         ("scaler", "the scaler reads")):
        result = imgburst(command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        assert "REDIS_URL is not set" in result.stderr and why in result.stderr, result.stderr
        assert "imgburst up" in result.stderr and "Traceback" not in result.stderr


def test_up_on_a_taken_port_says_so_before_starting_anything(tmp_path):
    with socket.socket() as taken:  # another server there, which would answer /healthz
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = imgburst("up", "--port", str(port), env={
            "PATH": os.environ["PATH"], "IMGBURST_HOME": str(tmp_path / "var")}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"Can't listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "imgburst is up" not in result.stderr and "redis:" not in result.stderr


def test_api_on_a_taken_port_says_so_and_what_to_do(base_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = imgburst("api", "--host", "127.0.0.1", "--port", str(port), env=base_env)
    assert result.returncode == 2, result.stderr
    assert f"Can't listen on 127.0.0.1:{port}" in result.stderr, result.stderr
    assert "IMGBURST_PORT" in result.stderr and "Traceback" not in result.stderr
    assert "imgburst API on" not in result.stderr  # said only once it listens


def test_default_url_prefers_the_environment_then_the_running_up(tmp_path, monkeypatch):
    from imgburst.cli.local_url import default_url, forget_url, remember_url

    for name in ("IMGBURST_URL", "IMGBURST_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMGBURST_HOME", str(tmp_path))
    assert default_url(Settings.from_env()) == "http://127.0.0.1:8000"
    remember_url(tmp_path, "http://127.0.0.1:8123")
    assert default_url(Settings.from_env()) == "http://127.0.0.1:8123"
    monkeypatch.setenv("IMGBURST_PORT", "9001")
    assert default_url(Settings.from_env()) == "http://127.0.0.1:9001"
    monkeypatch.setenv("IMGBURST_URL", "http://api.example:80")
    assert default_url(Settings.from_env()) == "http://api.example:80"
    forget_url(tmp_path, "http://127.0.0.1:9999")  # another `up`'s: left as it is
    assert (tmp_path / "api-url").exists()
    forget_url(tmp_path, "http://127.0.0.1:8123")
    assert not (tmp_path / "api-url").exists()


def test_running_ups_are_listed_while_they_run_and_stale_ones_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(local_url.tempfile, "gettempdir", lambda: str(tmp_path))
    entry = local_url.register_running(tmp_path / "a" / "var", "http://127.0.0.1:8001")
    assert local_url.running_ups() == [(tmp_path / "a" / "var", "http://127.0.0.1:8001")]
    hint = local_url.elsewhere_hint(tmp_path / "b" / "var", "http://127.0.0.1:8000")
    assert f"IMGBURST_HOME={tmp_path / 'a' / 'var'} at http://127.0.0.1:8001" in hint
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = entry.with_name(f"up-{dead.pid}.json")
    stale.write_text(entry.read_text())  # an `up` that was killed: its entry stayed
    assert len(local_url.running_ups()) == 1 and not stale.exists()
    entry.unlink()
    assert "is `imgburst up` running?" in local_url.elsewhere_hint(tmp_path, "http://x")


def test_a_folder_over_a_multipart_batchs_caps_goes_as_one_batch_and_fetch_takes_it(
        base_env, start_service, start_worker, tmp_path):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port)}  # the CLI's: no limits of its own
    url = start_live_stack(env | {"IMGBURST_MAX_FILES": "3", "IMGBURST_MAX_FILE_MB": "1"},
                           start_service, start_worker, concurrency=2)  # the API's
    photos = tmp_path / "photos"
    names = [f"day1/p{i}.jpg" for i in range(4)] + [f"day2/p{i}.jpg" for i in range(3)]
    for i, name in enumerate(names):  # two cameras' folders: the same names in both
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        (photos / name).write_bytes(photo_bytes(i, 64, 48))
    result = imgburst("submit", str(photos), "--wait", env=env)
    assert result.returncode == 0, result.stderr
    batch_id = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", batch_id), result.stdout
    assert f"batch {batch_id}: 7 jobs queued" in result.stderr, result.stderr
    assert re.search(r"succeeded: 7 succeeded, 0 failed in \d+\.\d s", result.stderr)
    batch = requests.get(f"{url}/api/v1/batches/{batch_id}", timeout=5).json()
    assert (batch["jobs"], batch["status"], batch["name"]) == (7, "succeeded", "photos")
    assert batch["closed_by"] == "client"
    inputs = [j["input"] for j in requests.get(f"{url}/api/v1/batches/{batch_id}/jobs",
                                               timeout=5).json()["items"]]
    assert sorted(inputs) == sorted(names)  # each by its path inside the folder
    assert f"imgburst fetch {batch_id} --out" in result.stderr
    out = tmp_path / "out"
    fetch = imgburst("fetch", batch_id, "--out", str(out), env=env)
    assert fetch.returncode == 0 and "wrote 14 files" in fetch.stderr, fetch.stderr
    table = imgburst("status", batch_id, env=env).stdout  # 80 columns, folder names and all
    assert "medium 64x48" in table and max(map(len, table.splitlines())) <= 80, table
    written = sorted(p.relative_to(out / "thumb").as_posix() for p in out.rglob("*.webp"))
    assert written == sorted(name.replace(".jpg", ".webp") for name in names)  # folders kept
    assert Image.open(out / "medium" / "day2" / "p0.jpg").size == (64, 48)
    again = imgburst("fetch", batch_id, "--out", str(out), env=env)  # run again: completes
    assert "wrote 0 files" in again.stderr and "kept 14 files that were there already" in \
        " ".join(again.stderr.split()), again.stderr
    (out / "thumb" / "day1" / "p0.webp").write_bytes(b"changed by hand")
    beside = imgburst("fetch", batch_id, "--out", str(out), "--existing", "rename", env=env)
    assert "wrote 14 files" in beside.stderr and "renamed: " in beside.stderr, beside.stderr
    assert (out / "thumb" / "day1" / "p0.webp").read_bytes() == b"changed by hand"  # kept
    assert len(list((out / "thumb" / "day1").glob("p0-*.webp"))) == 1
    replaced = imgburst("fetch", batch_id, "--out", str(out), "--existing", "overwrite", env=env)
    assert "wrote 14 files" in replaced.stderr, replaced.stderr
    assert Image.open(out / "thumb" / "day1" / "p0.webp").size == (64, 48)
    second = imgburst("submit", str(photos), "--wait", env=env).stdout.strip()  # anew
    both = imgburst("fetch", batch_id, second, "--out", str(tmp_path / "both"), env=env)
    said = " ".join(both.stderr.split())  # the same 7 paths in each batch
    assert both.returncode == 0 and "wrote 28 files" in said, both.stderr
    assert f"of batch {second} has the same path as another input" in said, said
    assert f"of batch {batch_id} has" not in said  # the first batch's keep their names
    assert "... and 9 more renamed" in said, said
    assert len(list((tmp_path / "both").rglob("*-*.*"))) == 14
    ids = [batch_id, second]
    odd = tmp_path / "[holiday] photos"  # brackets are rich's markup: shown as they are
    (odd / "[/x]").mkdir(parents=True)
    (odd / "[/x]" / "[bold]a.jpg").write_bytes(photo_bytes(9, 64, 48))
    got = imgburst("submit", str(odd), "--out", str(tmp_path / "out[/y]"), env=env)
    assert got.returncode == 0, got.stderr
    assert f"wrote 2 files under {tmp_path / 'out[/y]'}" in got.stderr, got.stderr
    assert (tmp_path / "out[/y]" / "thumb" / "[/x]" / "[bold]a.webp").is_file()
    shown = imgburst("status", got.stdout.strip(), env=env | {"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "([holiday] photos) succeeded" in shown.stdout, shown.stdout
    assert "│ [/x]/[bold]a.jpg │" in shown.stdout, shown.stdout
    newest = imgburst("status", "--limit", "1", env=env)
    assert newest.returncode == 0 and batch_id not in newest.stdout, newest.stdout
    assert "the newest 1 of 3 batches (--limit for more)" in newest.stderr, newest.stderr
    assert "[holiday] photos" in newest.stdout
    every = imgburst("status", env=env)
    assert all(i in every.stdout for i in ids) and "newest" not in every.stderr, every.stderr

    (photos / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1 << 20))
    refused = imgburst("submit", str(photos), env=env)
    assert refused.returncode == 2, refused.stderr
    assert "the API's 1 MB limit for one image" in refused.stderr, refused.stderr
    assert "huge.png (1.0 MB)" in refused.stderr and "nothing was sent" in refused.stderr
    listed = requests.get(f"{url}/api/v1/batches", timeout=5).json()
    assert listed["total"] == 3  # nothing of the refused folder reached the API



def sent_images(port: int, key: str, batch_id: str) -> list[str]:
    jobs = requests.get(f"http://127.0.0.1:{port}/api/v1/batches/{batch_id}/jobs", timeout=5,
                        headers={"Authorization": f"Bearer {key}"}).json()["items"]
    return sorted(job["input"] for job in jobs)


@pytest.mark.services
def test_an_interrupted_submit_run_again_sends_only_what_is_missing(base_env, start_service,
                                                                    start_worker, tmp_path):
    """No worker and a key that may have 3 images in flight: the upload is held back
    (429 + Retry-After) after 3, Ctrl-C comes; the batch stays open with what it got. Run
    again with a worker, `submit` finds the batch, sends the 4 it lacks, and each image
    is in it once."""
    port = free_port()
    key = "ib_" + "k" * 40
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_AUTH": "on",
                      "IMGBURST_API_KEYS": f"carol={key}", "IMGBURST_URL_SECRET": "s" * 40,
                      "IMGBURST_QUOTA_IN_FLIGHT": "3", "IMGBURST_API_KEY": key}
    start_service(env, "api", "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "the API")
    photos = tmp_path / "photos"
    (photos / "day2").mkdir(parents=True)
    names = [f"p{i}.jpg" for i in range(5)] + ["day2/p0.jpg", "day2/p1.jpg"]
    for i, name in enumerate(names):
        (photos / name).write_bytes(photo_bytes(i, 64, 48))
    submit = subprocess.Popen(
        [sys.executable, "-m", "imgburst.cli", "submit", str(photos)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    listed = lambda: requests.get(f"http://127.0.0.1:{port}/api/v1/batches", timeout=5,  # noqa: E731
                                  headers={"Authorization": f"Bearer {key}"}).json()["items"]
    wait_until(lambda: bool(listed()) and listed()[0]["jobs"] == 3, 30, "3 images in")
    time.sleep(1)  # held back: nothing more comes in
    assert listed()[0]["jobs"] == 3 and submit.poll() is None
    submit.send_signal(signal.SIGINT)
    out, err = submit.communicate(timeout=30)
    batch_id = listed()[0]["id"]
    assert submit.returncode == 130, err
    assert f"upload stopped; batch {batch_id} keeps what it received" in err, err
    assert "run the same command again to send the rest" in err, err
    assert out == f"{batch_id}\n"
    assert listed()[0]["status"] == "receiving"
    start_worker(env)
    again = imgburst("submit", str(photos), "--wait", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{batch_id}\n"  # the same batch, not a second one
    assert "continues an interrupted upload: 3 of 7 images are there already" in again.stderr
    assert f"batch {batch_id} succeeded: 7 succeeded, 0 failed" in again.stderr, again.stderr
    assert again.stderr.count("held back") <= 1  # Retry-After honoured without a word each
    assert sent_images(port, key, batch_id) == sorted(names)  # each once, none missing
    assert len(listed()) == 1
    fresh = imgburst("submit", str(photos), env=env)  # closed by its client: a new batch
    assert fresh.returncode == 0 and fresh.stdout.strip() != batch_id, fresh.stderr


@pytest.mark.services
def test_an_api_killed_mid_upload_loses_nothing_it_was_sent(base_env, start_service,
                                                             start_worker, tmp_path):
    """The API dies (SIGKILL) after recording an image and before sending its job: that
    request gets no answer. `submit` sends it again to the restarted API (a no-op: the
    image is there), the reconciler sends the job the dead API did not, and the batch
    ends with every image once, all processed."""
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_URL": f"http://127.0.0.1:{port}",
                      "IMGBURST_RECONCILE_GRACE_S": "1"}
    dying = start_service(env | {"IMGBURST_FAIL_POINT": "image-after-record"}, "api",
                          "--host", "127.0.0.1")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "the API")
    start_worker(env)
    start_service(env, "scaler")  # runs the reconciler: its first pass sets the epoch
    broker = redis.Redis.from_url(env["REDIS_URL"])
    wait_until(lambda: broker.get(EPOCH_KEY) is not None, 30, "the reconciler's first pass")
    for i in range(4):
        (tmp_path / f"p{i}.jpg").write_bytes(photo_bytes(i, 64, 48))
    submit = subprocess.Popen([sys.executable, "-m", "imgburst.cli", "submit", str(tmp_path),
                               "--wait"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert dying.wait(timeout=30) == -signal.SIGKILL  # on the first image
    start_service(env, "api", "--host", "127.0.0.1")
    out, err = submit.communicate(timeout=120)
    assert submit.returncode == 0, err
    batch_id = out.strip()
    assert f"batch {batch_id} succeeded: 4 succeeded, 0 failed" in err, err
    batch = requests.get(f"http://127.0.0.1:{port}/api/v1/batches/{batch_id}", timeout=5).json()
    assert batch["jobs"] == 4 and batch["counts"]["succeeded"] == 4
    jobs = requests.get(f"http://127.0.0.1:{port}/api/v1/batches/{batch_id}/jobs",
                        timeout=5).json()["items"]
    assert sorted(j["input"] for j in jobs) == [f"p{i}.jpg" for i in range(4)]
    events = requests.get(f"http://127.0.0.1:{port}/api/v1/stats", timeout=5).json()["events"]
    assert any(e["kind"] == "requeued" and "recorded but not sent" in e["reason"]
               for e in events), [
        (e["kind"], e.get("reason")) for e in events]


def test_preview_and_presets_from_the_command_line(base_env, start_service, start_worker,
                                                   tmp_path):
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port)}
    start_live_stack(env, start_service, start_worker)
    listed = imgburst("presets", env=env | {"COLUMNS": "120"})
    assert listed.returncode == 0, listed.stderr
    assert "avatar-2x: webp, resize 128x128 fill" in listed.stdout, listed.stdout
    assert "thumb: webp, resize 256x256 fit" in listed.stdout
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(photo_bytes(3, 800, 600))
    first = subprocess.run([sys.executable, "-m", "imgburst.cli", "preview", str(photo)],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "cat.thumb.webp"  # the default recipe's first output
    assert Image.open(tmp_path / "cat.thumb.webp").size == (256, 192)
    assert "thumb: 256x192 WEBP" in first.stderr, first.stderr
    chosen = imgburst("preview", str(photo), "--preset", "avatar", "--output", "avatar-2x",
                      "--out", str(tmp_path / "out" / "me.webp"), env=env)
    assert chosen.returncode == 0, chosen.stderr
    assert Image.open(tmp_path / "out" / "me.webp").size == (256, 256)
    unknown = imgburst("preview", str(photo), "--preset", "avatar", "--output", "big", env=env)
    assert unknown.returncode == 1 and "output must be one of avatar, avatar-2x" in \
        unknown.stderr, unknown.stderr
    both = imgburst("preview", str(photo), "--preset", "avatar", "--recipe", str(photo),
                    env=env)
    assert both.returncode == 2 and "give --preset or --recipe, not both" in both.stderr


def test_an_abandoned_upload_is_closed_for_idleness_processed_and_said_to_be_cut(
        base_env, start_service, start_worker):
    """A client opens a batch, sends two images and goes away: the reconciler closes the
    batch IMGBURST_RECEIVE_IDLE_S after the last image, the images are processed, and the
    batch (and `imgburst status`) say it was cut."""
    port = free_port()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_RECEIVE_IDLE_S": "2"}
    url = start_live_stack(env, start_service, start_worker)
    batch_id = requests.post(f"{url}/api/v1/batches", json={"receive": {}, "name": "gone"},
                             timeout=5).json()["id"]
    for i in range(2):
        requests.put(f"{url}/api/v1/batches/{batch_id}/images/p{i}.jpg", timeout=5,
                     data=photo_bytes(i, 64, 48)).raise_for_status()
    shown = imgburst("status", batch_id, env=env)
    assert "receiving: 2 images so far" in " ".join(shown.stdout.split()), shown.stdout
    batch = lambda: requests.get(f"{url}/api/v1/batches/{batch_id}", timeout=5).json()  # noqa: E731
    wait_until(lambda: batch()["status"] == "succeeded", 30, "the abandoned batch to end")
    assert batch()["closed_by"] == "idle" and batch()["counts"]["succeeded"] == 2
    cut = imgburst("status", batch_id, env=env)
    assert "cut: its upload stopped after 2 images" in " ".join(cut.stdout.split()), cut.stdout
    listing = imgburst("status", env=env | {"COLUMNS": "120"})
    assert "succeeded (cut)" in listing.stdout, listing.stdout
    events = requests.get(f"{url}/api/v1/stats", timeout=5).json()["events"]
    assert any(e["kind"] == "closed-idle" and e["batch"] == batch_id for e in events)
