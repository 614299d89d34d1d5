"""A worker whose imaging is a fixed sleep: a stand-in for a remote burst pod.

Everything around the imaging is the service's own (the task, the claim, the input read,
the two output writes, the finish, the job-end telemetry), so the central parts (API,
Redis, job store) see exactly what real workers cost them, while the stand-in itself
costs almost no CPU. Celery's thread pool runs `--threads` of them in one process. Not a
benchmark itself: `bench/scale.py` starts it.
"""

from __future__ import annotations

import argparse
import io
import time

from celery.utils.log import mlevel
from PIL import Image
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from imgburst.core import store
from imgburst.core.celery_app import QUEUE, worker_name
from imgburst.core.recipes import Recipe
from imgburst.core.settings import Settings
from imgburst.worker import imaging, tasks


def tiny(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (90, 120, 150)).save(out, {"jpeg": "JPEG"}.get(fmt, fmt.upper()))
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--sleep-ms", type=float, required=True, help="each job's imaging")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    outputs: dict[str, bytes] = {}

    def sleep_instead(_settings: Settings, _data: bytes, recipe: Recipe,
                      _assets: dict[str, bytes], _accept: str | None = None
                      ) -> list[imaging.Rendered]:
        time.sleep(args.sleep_ms / 1000)
        return [imaging.Rendered(name=spec.name, format=spec.format, width=4, height=3,
                                 data=outputs.setdefault(spec.format, tiny(spec.format)))
                for spec in recipe.outputs]

    tasks.render_within_budget = sleep_instead
    made = store.make_engine

    def one_connection_per_thread(settings: Settings) -> Engine:
        """Each thread stands for a pod's pool process, which holds one connection: as
        many in the pool as threads (the default pool, 5 + 10, would make them queue)."""
        engine = made(settings)
        if engine.dialect.name != "mysql":
            return engine
        engine.dispose()
        return create_engine(engine.url, pool_size=args.threads, max_overflow=0,
                             pool_pre_ping=True, pool_recycle=1800,
                             connect_args={"connect_timeout": 10})

    store.make_engine = one_connection_per_thread
    app = tasks.create_worker_app(Settings.from_env())
    app.Worker(queues=[QUEUE], hostname=worker_name("burst", args.name),
               concurrency=args.threads, pool_cls="threads", loglevel=mlevel("WARNING"),
               without_mingle=True, without_gossip=True).start()


if __name__ == "__main__":
    main()
