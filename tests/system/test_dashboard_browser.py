"""The live dashboard in a real headless Chromium, against a live stack that bursts.

`imgburst api` + a base worker + the scaler with the local backend run as processes;
the browser submits a demo spike through the page's own form, then the test samples
the page while the burst happens and drains. Keys are on: the page signs in through a
one-time link, as `imgburst up` prints one. Screenshots land in `test-artifacts/`.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
import redis
import requests
from conftest import free_port, http_ok, start_live_stack, wait_until
from playwright.sync_api import sync_playwright

from imgburst.core.keys import generate_key
from imgburst.core.synthetic import photo_bytes
from imgburst.vk.events import EventLog

pytestmark = [pytest.mark.browser, pytest.mark.services, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


ADMIN_KEY = generate_key()
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def live_stack(base_env, start_worker, start_service):
    port = free_port()
    env = base_env | {"SCALER_MAX_BURST": "2", "SCALER_MAX_STEP": "2", "SCALER_COOLDOWN_S": "3",
                      "SCALER_POLL_S": "0.5", "IMGBURST_PORT": str(port),
                      "IMGBURST_AUTH": "on", "IMGBURST_ADMIN_KEYS": f"admin={ADMIN_KEY}"}
    url = start_live_stack(env, start_service, start_worker)
    wait_until(lambda: requests.get(f"{url}/api/v1/stats", timeout=2, headers=ADMIN)
               .json()["scaler"] is not None, 30, "the scaler to publish its state")
    return url


def wait_js(page, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression (page.evaluate runs outside the page's CSP; Playwright's
    wait_for_function would need 'unsafe-eval', which the dashboard rightly forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def test_dashboard_shows_a_burst_live(live_stack, base_env):

    held = "held: the base pool clears this work within 2 s"  # a small batch, before it
    events = EventLog(redis.Redis.from_url(base_env["REDIS_URL"]))
    events.record("decision", reason=held, held=True, work=3, started=[], stopping=[],
                  reaped=[])
    events.record("burst-failed", worker="burst@imgburst-burst-0a1b2c3d",
                  reason="ErrImagePull", message="manifest unknown", failures=1, backoff_s=10)
    failed = ("burst@imgburst-burst-0a1b2c3d failed: ErrImagePull (manifest unknown); "
              "backing off 10 s")

    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        link = requests.post(f"{live_stack}/api/v1/login-links", headers=ADMIN, timeout=5).json()
        page.goto(live_stack + link["path"])
        wait_js(page, "document.getElementById('live').textContent.includes('scaler')")
        assert link["code"] not in page.url  # traded for the key, then out of the address bar

        page.fill("#spike input[name=images]", "150")
        page.select_option("#spike select[name=size]", "2MP")
        page.click("#spike button")
        wait_js(page, "document.getElementById('spike-result').textContent.includes('jobs queued')")

        samples = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            samples.append(page.evaluate("""() => ({
                work: Number(document.getElementById('chart-work').dataset.max || 0),
                points: Number(document.getElementById('chart-work').dataset.points || 0),
                last: document.getElementById('chart-work').dataset.last,
                burst: Number(document.getElementById('pool-burst-running').textContent),
                pending: Number(document.getElementById('pool-burst-pending').textContent),
                bar: (document.querySelector('#batches tr.batch .bar span') || {style: {}})
                    .style.width,
                status: (document.querySelector('#batches tr.batch td:nth-child(2)') || {})
                    .textContent,
                events: [...document.querySelectorAll('#events li')].map(li => li.textContent),
            })"""))
            if samples[-1]["status"] == "succeeded" and any(
                    "drained" in e for e in samples[-1]["events"]):
                break
            if len(samples) == 20:
                page.screenshot(path=str(ARTIFACTS / "dashboard-burst.png"), full_page=True)
            time.sleep(0.5)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

        assert samples[-1]["status"] == "succeeded", samples[-1]
        assert page.text_content("#batches tr.batch .batch-name") == "demo spike"
        hover = page.get_attribute("#batches tr.batch", "title")
        assert re.fullmatch(r"[0-9a-f]{32}: demo:150 x \w+", hover), hover  # id and source
        stats = requests.get(f"{live_stack}/api/v1/stats", timeout=5, headers=ADMIN).json()
        assert stats["latency"]["jobs"] >= 150  # every worker recorded its jobs' timings
        assert stats["throughput"]["last_60s"] > 0 and stats["jobs"]["succeeded"] == 150
        widths = [float(s["bar"].rstrip("%")) for s in samples if s["bar"]]
        assert widths[0] < 100 and widths[-1] == 100, widths  # the progress bar moved
        assert max(s["work"] for s in samples) > 10  # the work chart rose with the spike
        assert len({s["last"] for s in samples}) > 5  # ... and kept changing
        assert samples[-1]["points"] > samples[0]["points"]
        assert max(s["burst"] + s["pending"] for s in samples) > 0, "no burst worker shown"
        assert any("+" in e and "burst" in e for e in samples[-1]["events"]), samples[-1]
        assert any(e.endswith(held) for e in samples[-1]["events"])  # why none started
        assert any(e.endswith(failed) for e in samples[-1]["events"])  # why pods failed
        assert re.search(r"led by \S+-\d+-[0-9a-f]{4}$", page.text_content("#live")), \
            page.text_content("#live")  # which scaler acts
        assert page.locator("#chart-workers g.marker title").count() > 0  # marked on the axis
        for chart in ("#chart-work", "#chart-workers"):  # a scale to read the counts by
            ticks = page.eval_on_selector_all(f"{chart} + .scale .tick",
                                              "ts => ts.map(t => t.textContent)")
            top = int(page.eval_on_selector(chart, "svg => svg.dataset.max"))
            assert ticks and all(t.isdigit() and 0 < int(t) < top for t in ticks), (ticks, top)
            assert [int(t) for t in ticks] == sorted({int(t) for t in ticks})
            assert page.locator(f"{chart} line.grid").count() == len(ticks)
            window = page.text_content(f"{chart} + .scale .window")
            assert re.fullmatch(r"last \d+ (s|min)", window), window
            paths = page.eval_on_selector_all(f"{chart} path",
                                              "ps => ps.map(p => p.getAttribute('d'))")
            for d in paths:  # a sample holds until the next: across, then up or down
                xy = [(float(a), float(b)) for a, b in re.findall(r"(-?[\d.]+),(-?[\d.]+)", d)]
                slopes = [(a, b) for a, b in itertools.pairwise(xy)
                          if a[0] != b[0] and a[1] != b[1]]
                assert not slopes, (chart, slopes[:3])
            assert paths, chart

        wait_js(page, """[...document.querySelectorAll('#gallery img')]
            .some(img => img.complete && img.naturalWidth > 0)""", timeout=10)  # signed URLs
        assert "sig=" in page.eval_on_selector("#gallery img", "img => img.src")
        hover = page.get_attribute("#gallery figure", "title")
        assert re.fullmatch(r".+\.\w+: \w+, \d+×\d+, \w+@.+", hover), hover  # its input too
        captions = page.eval_on_selector_all("#gallery figcaption",
                                             "cs => cs.map(c => c.textContent)")
        assert captions, "no captions"  # the pool that made each, not a cut-off worker name
        assert all(re.fullmatch(r"(base|burst) · \d+×\d+", c) for c in captions), captions
        keys = page.eval_on_selector_all("#gallery figcaption .k", "ks => ks.map(k => k.className)")
        assert len(keys) == len(captions) and set(keys) <= {"k base", "k burst"}, keys  # coloured
        rows = page.eval_on_selector_all("#workers tbody tr", "rs => rs.map(r => r.dataset.pool)")
        assert "base" in rows

        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways on a phone by {overflow}px"
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

        dark = browser.new_page(color_scheme="dark", viewport={"width": 1280, "height": 800})
        dark.on("pageerror", lambda e: errors.append(str(e)))
        dark.goto(live_stack + link["path"])  # a new context, and the link was used:
        wait_js(dark, "document.getElementById('key-state').textContent"  # no key, so
                      ".includes('Login link used or expired')")  # nothing private is shown
        wait_js(dark, "document.getElementById('live').textContent === 'API key needed'")
        assert dark.locator("#batches tr.batch").count() == 0
        assert dark.locator("#batches td.empty").count() == 1
        clipped = dark.evaluate("""(() => { const panel = document.querySelector('#batches')
            .closest('.panel'); return panel.scrollWidth - panel.clientWidth; })()""")
        assert clipped <= 0, f"the empty batches note runs {clipped}px past its panel"
        assert dark.locator("#gallery img").count() == 0
        background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
        light = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background != light and background == "rgb(17, 20, 24)"
        dark.screenshot(path=str(ARTIFACTS / "dashboard-dark.png"))
        keyed = browser.new_page()  # a key in the fragment works too, and leaves the bar
        keyed.goto(live_stack + f"/#key={ADMIN_KEY}")
        wait_js(keyed, "document.getElementById('live').textContent.includes('scaler')")
        assert ADMIN_KEY not in keyed.url
        browser.close()
    assert not errors, errors


def test_dashboard_lists_every_batch_a_page_at_a_time_and_a_receiving_ones_progress(
        base_env, start_service):
    """13 batches of one key: the table pages through all of them (10 a page), and a
    streamed batch still receiving says how many of its images came and how many are
    done. A non-admin key sees its own batches, not another key's."""
    port = free_port()
    alice = generate_key()
    env = base_env | {"IMGBURST_PORT": str(port), "IMGBURST_AUTH": "on",
                      "IMGBURST_API_KEYS": f"alice={alice},bob={generate_key()}",
                      "IMGBURST_SUBMIT_RATE": "off"}
    start_service(env, "api", "--host", "127.0.0.1")  # no worker: nothing moves on
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/readyz"), 60, "the API")
    keyed = {"Authorization": f"Bearer {alice}"}
    for i in range(12):
        requests.post(f"{url}/api/v1/batches", headers=keyed, timeout=5, data={"name": f"b{i}"},
                      files={"files": ("p.jpg", photo_bytes(i, 32, 32))}).raise_for_status()
    opened = requests.post(f"{url}/api/v1/batches", headers=keyed, timeout=5,
                           json={"receive": {}, "name": "streaming"}).json()
    for i in range(2):
        requests.put(f"{url}/api/v1/batches/{opened['id']}/images/p{i}.jpg", headers=keyed,
                     data=photo_bytes(i, 32, 32), timeout=5).raise_for_status()
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/#key={alice}")
        wait_js(page, "document.getElementById('batches-page').textContent === '1–10 of 13'")
        first = page.eval_on_selector_all("#batches tr.batch", "rs => rs.map(r => r.textContent)")
        assert len(first) == 10 and "streaming" in first[0], first
        assert "receiving" in first[0] and "0 done of 2 received so far" in first[0], first[0]
        assert page.is_disabled("#batches-newer") and not page.is_disabled("#batches-older")
        page.click("#batches-older")
        wait_js(page, "document.getElementById('batches-page').textContent === '11–13 of 13'")
        names = page.eval_on_selector_all("#batches tr.batch .batch-name",
                                          "ns => ns.map(n => n.textContent)")
        assert names == ["b2", "b1", "b0"], names  # the oldest, on the last page
        assert page.is_disabled("#batches-older")
        page.click("#batches-newer")
        wait_js(page, "document.getElementById('batches-page').textContent === '1–10 of 13'")
        browser.close()
    assert not errors, errors
