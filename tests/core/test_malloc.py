"""The API's heap settings: a stream of upload-sized buffers reuses memory instead of
faulting fresh pages in for each (what `imgburst api` sets before serving). Run in a
process of its own, so the test process keeps glibc's defaults."""

from __future__ import annotations

import json
import subprocess
import sys

BODIES = """
import io, json, resource
from imgburst.core.malloc import keep_freed_heap
assert keep_freed_heap(256), "mallopt refused the settings"
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


def test_later_bodies_reuse_the_first_ones_memory():
    done = subprocess.run([sys.executable, "-c", BODIES], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    faults = json.loads(done.stdout)
    # glibc's own thresholds fault ~4,000 pages in again for the second 16 MB body
    assert max(faults[1:]) < 500, f"16 MB bodies faulted pages in again: {faults}"
