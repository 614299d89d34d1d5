// The live dashboard: polls /api/v1/stats every second and redraws. No dependencies:
// the charts are plain SVG, the tables plain DOM (text only, never HTML from the server).
// The API key comes from a one-time link (`/#login=<code>`, which `imgburst up` and
// `imgburst login` print: the code is traded for the key once), from the URL fragment
// (`/#key=...`) or from the key form; it is kept for this tab only. A fragment is never
// sent with a request, and it leaves the address bar at once.
"use strict";

(() => {
  const WINDOW_S = 600;          // the charts show at most the last 10 minutes,
  const MIN_WINDOW_S = 60;       // and at least the last minute
  const POLL_MS = 1000;
  const W = 600, H = 180, TOP = 8;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  let series = [];
  let since = null;
  let galleryKey = "";
  const KEY_ITEM = "imgburst-key";
  const auth = document.body.dataset.auth === "on";

  const loginCode = location.hash.startsWith("#login=") ? location.hash.slice(7) : null;
  const hashKey = location.hash.startsWith("#key=") ? location.hash.slice(5) : null;
  if (hashKey !== null) sessionStorage.setItem(KEY_ITEM, decodeURIComponent(hashKey));
  if (loginCode !== null || hashKey !== null) {
    history.replaceState(null, "", location.pathname + location.search);
  }

  async function redeem(code) {
    keyState("signing in…");
    try {
      const response = await fetch("/api/v1/login", {
        method: "POST", cache: "no-store", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ code: decodeURIComponent(code) }),
      });
      const body = await response.json();
      if (response.ok) sessionStorage.setItem(KEY_ITEM, body.key);
      else keyState(`${body.title}: ${body.detail}`);
    } catch (error) {
      keyState(`could not sign in: ${error.message}`);
    }
  }

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_ITEM);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function keyState(text) {
    if ($("key-state")) $("key-state").textContent = text;
  }

  function node(tag, attrs, text) {
    const svgTags = ["path", "line", "title", "g", "rect"];
    const el = svgTags.includes(tag) ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (text !== undefined && text !== null) el.textContent = String(text);
    return el;
  }

  function clock(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    return value >= 1000 ? (value / 1000).toFixed(1) + " s" : value + " ms";
  }

  // -- charts -----------------------------------------------------------------------

  function scalingEvents(events) {
    return events.filter((e) => e.kind === "decision" &&
      ((e.started && e.started.length) || (e.stopping && e.stopping.length)));
  }

  // A sample holds until the next one: the polyline goes across, then up or down. A
  // slope between two samples would draw fractions of workers and jobs that never were.
  function steps(points, value, x, y) {
    const out = [];
    points.forEach((p, i) => {
      if (i > 0) out.push(`${x(p.t).toFixed(1)},${y(value(i - 1)).toFixed(1)}`);
      out.push(`${x(p.t).toFixed(1)},${y(value(i)).toFixed(1)}`);
    });
    return out;
  }

  function chart(svg, now, layers, line, events) {
    const points = series.filter((s) => s.t >= now - WINDOW_S);
    const span = Math.min(WINDOW_S, Math.max(MIN_WINDOW_S, points.length ? now - points[0].t : 0));
    const x = (t) => ((t - (now - span)) / span) * W;
    let max = 1;
    for (const p of points) {
      max = Math.max(max, layers.reduce((sum, l) => sum + (p[l.key] || 0), 0));
      if (line && p[line.key] !== null && p[line.key] !== undefined) max = Math.max(max, p[line.key]);
    }
    max = Math.ceil(max * 1.1);
    const y = (v) => H - (v / max) * (H - TOP);
    svg.replaceChildren();
    // Grid lines at whole counts (jobs, workers), each labelled, and the window's length:
    // the labels are HTML over the plot, since the SVG is stretched to the panel's width.
    const step = Math.max(1, Math.ceil(max / 4));
    const labels = [];
    for (let v = step; v < max; v += step) {
      svg.appendChild(node("line", { class: "grid", x1: 0, x2: W, y1: y(v), y2: y(v) }));
      const label = node("span", { class: "tick" }, v);
      label.style.top = `${((100 * y(v)) / H).toFixed(1)}%`;
      labels.push(label);
    }
    labels.push(node("span", { class: "window" },
      span >= 120 ? `last ${Math.round(span / 60)} min` : `last ${Math.round(span)} s`));
    svg.parentElement.querySelector(".scale").replaceChildren(...labels);
    if (points.length) {
      const below = points.map(() => 0);
      for (const layer of layers) {
        const above = points.map((p, i) => below[i] + (p[layer.key] || 0));
        const top = steps(points, (i) => above[i], x, y);
        const bottom = steps(points, (i) => below[i], x, y).reverse();
        svg.appendChild(node("path", { class: layer.cls, d: `M${top.concat(bottom).join("L")}Z` }));
        above.forEach((v, i) => { below[i] = v; });
      }
      if (line) {
        const known = points.filter((p) => p[line.key] !== null && p[line.key] !== undefined);
        if (known.length) {
          const d = "M" + steps(known, (i) => known[i][line.key], x, y).join("L");
          svg.appendChild(node("path", { class: line.cls, d }));
        }
      }
    }
    for (const e of scalingEvents(events)) {
      if (e.time < now - span) continue;
      const g = node("g", { class: "marker" });
      const at = x(e.time).toFixed(1);
      g.appendChild(node("line", { class: "event", x1: at, x2: at, y1: 0, y2: H }));
      g.appendChild(node("line", { class: "event-hit", x1: at, x2: at, y1: 0, y2: H }));
      g.appendChild(node("title", {}, `${clock(e.time)} ${e.reason}`));
      svg.appendChild(g);
    }
    svg.dataset.points = String(points.length);
    svg.dataset.max = String(max);
    svg.dataset.last = points.length ? JSON.stringify(points[points.length - 1]) : "";
  }

  // -- panels -----------------------------------------------------------------------

  function tiles(stats) {
    $("tile-waiting").textContent = stats.queue.waiting;
    $("tile-inflight").textContent = stats.queue.in_flight;
    $("pool-base").textContent = stats.workers.base;
    $("pool-burst-running").textContent = stats.workers.burst_running;
    $("pool-burst-pending").textContent = stats.workers.burst_pending;
    $("tile-throughput").textContent = `${stats.throughput.last_10s} · ${stats.throughput.last_60s}`;
    const wait = stats.latency.queue_wait_ms, run = stats.latency.processing_ms;
    $("tile-wait").textContent = `${ms(wait.p50)} · ${ms(wait.p95)}`;
    $("tile-run").textContent = `${ms(run.p50)} · ${ms(run.p95)}`;
  }

  // The key's own batches (an admin key's: all), newest first, a page at a time, from
  // GET /api/v1/batches: every batch, not only the ones the stats list as active.
  const PAGE = 10;
  let batchOffset = 0;

  async function batchPage() {
    const response = await fetch(`/api/v1/batches?limit=${PAGE}&offset=${batchOffset}`,
      { cache: "no-store", headers: authHeaders() });
    if (!response.ok) throw new Error(`batches answered ${response.status}`);
    const page = await response.json();
    if (page.total && batchOffset >= page.total) {  // the page emptied: back to the last
      batchOffset = Math.max(0, (Math.ceil(page.total / PAGE) - 1) * PAGE);
      return batchPage();
    }
    batches(page.items);
    const last = batchOffset + page.items.length;
    $("batches-page").textContent = page.total ? `${batchOffset + 1}–${last} of ${page.total}` : "";
    $("batches-newer").disabled = batchOffset === 0;
    $("batches-older").disabled = last >= page.total;
  }

  function turnPage(step) {
    batchOffset = Math.max(0, batchOffset + step * PAGE);
    batchPage().catch(() => {});
  }

  function progress(b) {
    const done = b.counts.succeeded + b.counts.failed + b.counts.cancelled;
    const failed = b.counts.failed ? ` (${b.counts.failed} failed)` : "";
    if (b.status === "receiving") return `${done} done of ${b.jobs} received so far${failed}`;
    const cut = b.closed_by === "idle" ? " · cut: its upload stopped" : "";
    return `${done} / ${b.jobs}${failed}${cut}`;
  }

  function batches(items) {
    const body = $("batches").tBodies[0];
    body.replaceChildren();
    if (!items.length) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 4;
      cell.className = "empty";
      cell.textContent = "No batches yet: submit some images or a demo spike.";
      return;
    }
    for (const b of items) {
      const done = b.counts.succeeded + b.counts.failed + b.counts.cancelled;
      const row = body.insertRow();
      row.className = "batch";
      row.dataset.id = b.id;
      row.title = `${b.id}: ${b.source}`;  // what it was made from (upload, blobs, demo)
      const label = row.insertCell();
      label.appendChild(node("code", {}, b.id.slice(0, 8)));
      if (b.name) label.appendChild(node("span", { class: "batch-name" }, b.name));
      row.insertCell().textContent = b.status;
      const bar = node("div", { class: "bar" });
      const fill = node("span");
      fill.style.width = (b.jobs ? (100 * done / b.jobs).toFixed(1) : 0) + "%";
      bar.appendChild(fill);
      row.insertCell().appendChild(bar);
      row.insertCell().textContent = progress(b);
    }
  }

  function workers(items) {
    const body = $("workers").tBodies[0];
    body.replaceChildren();
    for (const w of items) {
      const row = body.insertRow();
      row.dataset.pool = w.pool;
      row.dataset.state = w.state;
      for (const value of [w.name, w.pool, w.host, w.state, w.active, w.processed,
        w.up_since ? clock(w.up_since) : "–"]) row.insertCell().textContent = value;
    }
  }

  function describe(e) {
    if (e.kind === "decision") {
      const up = (e.started || []).length, down = (e.stopping || []).length;
      const change = up ? `+${up} burst` : down ? `−${down} burst` : "";
      return `${change} ${e.reason}`.trim();
    }
    if (e.kind === "burst-consuming") return `${e.worker} consuming after ${e.start_latency_s} s`;
    if (e.kind === "drained") {
      const back = (e.handed_back || []).length;
      return `${e.worker} drained in ${e.drain_s} s` +
        (back ? `: removed busy, ${back} job${back > 1 ? "s" : ""} handed back` : "");
    }
    if (e.kind === "burst-failed") {
      const who = e.worker ? `${e.worker} failed` : "burst workers refused";
      return `${who}: ${e.reason}${e.message ? ` (${e.message})` : ""}; ` +
        `backing off ${e.backoff_s} s`;
    }
    if (e.kind === "base-pool-missing") return e.reason;
    if (e.kind === "handed-back") {
      const n = (e.jobs || []).length;
      return `${n} job${n > 1 ? "s" : ""} of ${e.worker} handed back: ${e.reason}`;
    }
    if (e.kind === "requeued") return `${e.jobs} jobs sent again: ${e.reason}`;
    if (e.kind === "restored") return `${e.entries} messages restored: ${e.reason}`;
    if (e.kind === "removed-inputs") return `${e.count} inputs removed: ${e.reason}`;
    if (e.kind === "closed-idle") return `batch ${e.batch} closed: ${e.reason}`;
    if (e.kind === "burst-recovered") return `burst workers start again after ${e.after_failures} failures`;
    if (e.kind === "scaler-leading") return `scaler ${e.identity} leads`;
    if (e.kind === "scaler-standby") return `scaler ${e.identity} stands by (${e.holder || "no"} leader)`;
    if (e.kind === "burst-first-task") return `${e.worker} first task after ${e.first_task_s} s`;
    return e.worker ? `${e.kind} ${e.worker}` : e.kind;
  }

  function worthListing(e) {  // not the "still steady" decisions of every quiet tick
    if (e.kind !== "decision") return true;
    return e.held || (e.started || []).length || (e.stopping || []).length
      || (e.reaped || []).length;
  }

  function events(items) {
    const list = $("events");
    list.replaceChildren();
    for (const e of items.filter(worthListing).reverse()) {
      const li = node("li", { "data-kind": e.kind });
      li.appendChild(node("time", {}, clock(e.time)));
      li.appendChild(document.createTextNode(describe(e)));
      list.appendChild(li);
    }
  }

  function gallery(items) {
    const key = items.map((g) => g.job_id).join(",");
    if (key === galleryKey) return;
    galleryKey = key;
    const box = $("gallery");
    box.replaceChildren();
    for (const g of items) {
      const fig = node("figure", { title: `${g.input}: ${g.name}, ${g.width}×${g.height}, ${g.worker || ""}` });
      fig.appendChild(node("img", { src: g.url, alt: `${g.name} of ${g.input}`, loading: "lazy",
        width: g.width, height: g.height }));
      // The pool is what a burst demo asks of an output; the whole worker name is in the title.
      const pool = (g.worker || "").split("@")[0];
      const caption = node("figcaption", {}, `${pool} · ${g.width}×${g.height}`);
      if (pool === "base" || pool === "burst") caption.prepend(node("span", { class: `k ${pool}` }));
      fig.appendChild(caption);
      box.appendChild(fig);
    }
  }

  // -- loop -------------------------------------------------------------------------

  async function poll() {
    try {
      const url = since === null ? "/api/v1/stats" : `/api/v1/stats?since=${since}`;
      if (auth && !sessionStorage.getItem(KEY_ITEM)) {
        $("live").textContent = "API key needed";
        return;
      }
      const response = await fetch(url, { cache: "no-store", headers: authHeaders() });
      if (response.status === 401) {
        keyState("that key was refused; give another");
        sessionStorage.removeItem(KEY_ITEM);
        throw new Error("stats answered 401");
      }
      if (!response.ok) throw new Error(`stats answered ${response.status}`);
      const stats = await response.json();
      keyState(stats.aggregates_only ? "key accepted (aggregates only)" : auth ? "admin key accepted" : "");
      $("aggregates-note").hidden = !stats.aggregates_only;
      for (const s of stats.series) if (since === null || s.t > since) series.push(s);
      if (series.length) since = series[series.length - 1].t;
      series = series.filter((s) => s.t >= stats.at - WINDOW_S);
      tiles(stats);
      chart($("chart-work"), stats.at, [
        { key: "in_flight", cls: "inflight" }, { key: "waiting", cls: "waiting" }], null, stats.events);
      chart($("chart-workers"), stats.at, [
        { key: "base", cls: "base" }, { key: "burst_running", cls: "burst" },
        { key: "burst_pending", cls: "pending" }], { key: "desired", cls: "desired" }, stats.events);
      await batchPage();
      workers(stats.workers.items);
      events(stats.events);
      gallery(stats.gallery);
      $("live").classList.remove("stale");
      $("live").textContent = stats.scaler
        ? `live · scaler ${stats.scaler.backend}` + (stats.scaler.leader ? ` · led by ${stats.scaler.leader}` : "")
        : "live · no scaler";
    } catch (error) {
      $("live").classList.add("stale");
      $("live").textContent = "reconnecting";
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  $("batches-newer").addEventListener("click", () => turnPage(-1));
  $("batches-older").addEventListener("click", () => turnPage(1));

  $("spike").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const out = $("spike-result");
    out.textContent = "submitting…";
    try {
      const response = await fetch("/api/v1/demo/spike", {
        method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({ images: Number(form.get("images")), size: form.get("size") }),
      });
      const body = await response.json();
      out.textContent = response.ok
        ? `batch ${body.id.slice(0, 8)}: ${body.jobs} jobs queued`
        : `${body.title}: ${body.detail}`;
    } catch (error) {
      out.textContent = `could not submit: ${error.message}`;
    }
  });

  if ($("key-form")) {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_ITEM, $("key-input").value.trim());
      $("key-input").value = "";
      keyState("checking…");
      since = null;
      series = [];
    });
  }

  (loginCode === null ? Promise.resolve() : redeem(loginCode)).then(poll);
})();
