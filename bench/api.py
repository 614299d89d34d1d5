"""Submit latency: `POST /api/v1/batches` with 10 small images, at 1, 8 and 32 concurrent
clients, against a bare Flask + waitress app that takes the same upload and stores
nothing (the baseline). Ours stores 10 blobs, records the batch and 10 jobs, enqueues 10
tasks (no worker runs: only the API is measured). p50 and p99 per concurrency, over the
samples of 4 rounds per level that alternate which side goes first.
Needs Redis: `REDIS_URL` (a database of its own is flushed) or 127.0.0.1:6379/14.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests
from harness import Stack, bare_server, table_row

from imgburst.core.percentiles import percentile
from imgburst.core.synthetic import photo_bytes

CONCURRENCY = (1, 8, 32)


def load(url: str, clients: int, per_client: int, files: list[tuple[str, bytes]],
         headers: dict[str, str] | None = None) -> list[float]:
    def client(_i: int) -> list[float]:
        session = requests.Session()
        session.headers.update(headers or {})
        took = []
        for _ in range(per_client):
            started = time.perf_counter()
            response = session.post(f"{url}/api/v1/batches", timeout=60,
                                    files=[("files", (n, d, "image/jpeg")) for n, d in files])
            took.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text
        return took

    with ThreadPoolExecutor(clients) as pool:
        return [t for part in pool.map(client, range(clients)) for t in part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000,
                        help="per concurrency level (1,000: p99 is then not the maximum)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="per level, alternating which side goes first")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    files = [(f"small-{i}.jpg", photo_bytes(i, 640, 480)) for i in range(10)]
    print(f"10 images of {sum(len(d) for _, d in files) / 10 / 1000:.0f} KB per batch, "
          f"{args.requests} batches per level in {args.rounds} alternating rounds", flush=True)
    bare, bare_url = bare_server()
    stack = Stack(redis_url, processes=0)
    results = {}
    try:
        for clients in CONCURRENCY:
            per_client = max(1, -(-args.requests // (clients * args.rounds)))  # >= requests
            load(bare_url, clients, 1, files), load(stack.url, clients, 1, files, stack.headers)
            base: list[float] = []
            ours: list[float] = []
            round_p99: list[float] = []
            for round_no in range(args.rounds):
                # Rounds alternate which side goes first, and the samples of all rounds are
                # pooled: this host's speed drifts within a minute, and a level timed as
                # one block per side (as it was) put the drift on whichever side ran second.
                sides = [("bare", bare_url, None), ("ours", stack.url, stack.headers)]
                took = {}
                for name, url, headers in sides if round_no % 2 == 0 else reversed(sides):
                    took[name] = load(url, clients, per_client, files, headers)
                base += took["bare"]
                ours += took["ours"]
                round_p99.append(percentile(sorted(took["ours"]), 99)
                                 / percentile(sorted(took["bare"]), 99))
            results[clients] = {p: (percentile(sorted(base), p) * 1000,
                                    percentile(sorted(ours), p) * 1000)
                                for p in (50, 99)}
            print(f"{clients:2d} clients, {len(ours)} requests each: p50 "
                  f"{results[clients][50][0]:.1f} / {results[clients][50][1]:.1f} ms, p99 "
                  f"{results[clients][99][0]:.1f} / {results[clients][99][1]:.1f} ms, max "
                  f"{max(base) * 1000:.1f} / {max(ours) * 1000:.1f} ms (bare / ours); "
                  f"p99 ratio per round {min(round_p99):.2f}..{max(round_p99):.2f}",
                  flush=True)
    finally:
        stack.close()
        bare.terminate()
        bare.wait(timeout=30)
    for clients, by_p in results.items():
        for p, (b, o) in by_p.items():
            table_row(f"submit p{p}, {clients} clients, 10 images", round(b, 1), round(o, 1),
                      "ms", o / b)
            print(f"RESULT api_submit_p{p}_c{clients} {o:.1f} ms")
            print(f"RESULT api_submit_p{p}_c{clients}_ratio {o / b:.2f} x")


if __name__ == "__main__":
    main()
