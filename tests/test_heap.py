"""The API's heap settings: a stream of upload-sized buffers reuses memory instead of
faulting fresh pages in for each (what `imgburst api` sets before serving)."""

from __future__ import annotations

import json
import subprocess
import sys

from imgburst.core.heap import keep_freed_heap

BODIES = """
import io, json, resource, sys
from imgburst.core.heap import keep_freed_heap
if sys.argv[1] == "keep":
    assert keep_freed_heap(256)
piece = b"x" * (256 << 10)  # what the server appends per read
faults = []
for i in range(6):  # each body a little larger than the one before, as uploads come
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    body = io.BytesIO()
    for _ in range(64 + i):
        body.write(piece)
    del body
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def faults_per_body(mode: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", BODIES, mode], capture_output=True,
                          text=True, check=True, timeout=60)
    return json.loads(done.stdout)


def test_setting_takes_effect_on_glibc():
    assert keep_freed_heap(256) is True


def test_later_bodies_reuse_the_first_ones_memory():
    kept = faults_per_body("keep")
    assert max(kept[1:]) < 500, f"16 MB bodies faulted pages in again: {kept}"
