"""`imgburst traffic`: the Istio demo's `while true; curl .../version` made measurable.

N requests (bounded concurrency) are counted by the version their body names (`I am
v1.111111111` -> `v1`); each version's share gets a 99.9% Wilson score interval, and
`--expect v1=90,v2=10` fails (exit 1) when an expected share lies outside its interval.
With 500 requests a true 90/10 split passes, a 95/5 or 100/0 split does not.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

Z_999 = 3.2905  # two-sided 99.9%
VERSION_RE = re.compile(r"I am (\S+)")


def wilson(k: int, n: int, z: float = Z_999) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (good near 0% and 100% too)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def version_of(status: int, body: str) -> str:
    """`v1` for `I am v1.111111111` (the demo's tags: their major); `0.1.0` for a plain
    `imgburst up`'s `I am 0.1.0`; `error` for a non-2xx answer; `other` otherwise."""
    if not 200 <= status < 300:
        return "error"
    match = VERSION_RE.search(body)
    if not match:
        return "other"
    version = match[1]
    return version.split(".")[0] if re.fullmatch(r"v\d+\..*", version) else version


def parse_expect(text: str) -> dict[str, float]:
    expected = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*([A-Za-z0-9_-]+)\s*=\s*([0-9.]+)\s*%?\s*", part)
        if not match or not 0 <= float(match[2]) <= 100:
            raise ValueError(f"expectation {part.strip()!r} must look like VERSION=PERCENT, "
                             "e.g. v1=90")
        expected[match[1]] = float(match[2]) / 100
    return expected


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"header {text!r} must look like 'Name: value', e.g. 'user: yoichi'")
    return name.strip(), value.strip()


def version_url(url: str) -> str:
    """The `/version` endpoint when the URL names only the host."""
    return url.rstrip("/") + "/version" if urlsplit(url).path in ("", "/") else url


def send(url: str, count: int, headers: dict[str, str], concurrency: int,
         timeout: float = 10) -> Counter[str]:
    session = requests.Session()

    def one(_i: int) -> str:
        try:
            response = session.get(url, headers=headers, timeout=timeout)
            return version_of(response.status_code, response.text)
        except requests.RequestException:
            return "error"

    with ThreadPoolExecutor(concurrency) as pool:
        return Counter(pool.map(one, range(count)))


@dataclass(frozen=True)
class Share:
    version: str
    count: int
    share: float
    low: float
    high: float
    expected: float | None

    @property
    def ok(self) -> bool:
        return self.expected is None or self.low - 1e-9 <= self.expected <= self.high + 1e-9


def shares(counts: Counter[str], expected: dict[str, float]) -> list[Share]:
    total = sum(counts.values())
    versions = sorted(set(counts) | set(expected))
    return [Share(v, counts.get(v, 0), counts.get(v, 0) / total if total else 0.0,
                  *wilson(counts.get(v, 0), total), expected.get(v)) for v in versions]
