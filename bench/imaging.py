"""Imaging benchmark: our engine vs a naive Pillow baseline, per operation and format.

Baseline ("naive"): what a first version writes: `Image.open`, `convert("RGB")` (a full
decode), each output resized with LANCZOS from the full image, the operation applied,
saved with the same format and quality. Ours: `imgburst.worker.imaging.process` with the
same recipe (JPEG draft decoding, reducing_gap, smaller outputs made from larger ones).
Both run in this process, alternating, single-threaded, on the same images; medians of
the per-round throughputs are compared.

Then peak RSS of one process that imports the worker and renders a 36 MP JPEG with the
default recipe (ours and naive, each in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # single-threaded, like both other columns

from harness import CACHE, images, table_row  # noqa: E402
from PIL import Image, ImageFilter

from imgburst.core.recipes import DEFAULT_RECIPE_JSON, Recipe, Resize, parse_recipe
from imgburst.core.synthetic import photo_bytes
from imgburst.worker.imaging import process

ROWS: dict[str, dict] = {
    "default recipe": DEFAULT_RECIPE_JSON,
    "fit 1024 jpeg": {"outputs": [{"name": "o", "format": "jpeg", "quality": 85, "ops": [
        {"op": "resize", "width": 1024, "height": 1024}]}]},
    "fill 256 webp": {"outputs": [{"name": "o", "format": "webp", "quality": 80, "ops": [
        {"op": "resize", "width": 256, "height": 256, "mode": "fill"}]}]},
    "fit 512 grayscale png": {"outputs": [{"name": "o", "format": "png", "ops": [
        {"op": "resize", "width": 512, "height": 512}, {"op": "grayscale"}]}]},
    "fit 800 blur jpeg": {"outputs": [{"name": "o", "format": "jpeg", "quality": 85, "ops": [
        {"op": "resize", "width": 800, "height": 800}, {"op": "blur", "sigma": 2}]}]},
    "fit 512 avif": {"outputs": [{"name": "o", "format": "avif", "quality": 60, "ops": [
        {"op": "resize", "width": 512, "height": 512}]}]},
}
SAVE = {"jpeg": ("JPEG", {"quality": 85}), "webp": ("WEBP", {"quality": 80, "method": 4}),
        "png": ("PNG", {"compress_level": 6}), "avif": ("AVIF", {"quality": 60, "speed": 8})}


def naive(data: bytes, recipe: Recipe) -> int:
    """The baseline: full decode, LANCZOS from full size for each output, then save."""
    full = Image.open(io.BytesIO(data)).convert("RGB")
    total = 0
    for spec in recipe.outputs:
        img = full
        for op in spec.ops:
            if isinstance(op, Resize):
                w, h = img.size
                if op.mode == "fill":
                    scale = max(op.width / w, op.height / h)
                    cw, ch = op.width / scale, op.height / scale
                    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
                    img = img.resize((op.width, op.height), Image.Resampling.LANCZOS, box=box)
                else:
                    scale = min(op.width / w, op.height / h, 1.0)
                    img = img.resize((round(w * scale), round(h * scale)),
                                     Image.Resampling.LANCZOS)
            elif op.name == "grayscale":
                img = img.convert("L")
            elif op.name == "blur":
                img = img.filter(ImageFilter.GaussianBlur(op.sigma))  # type: ignore[attr-defined]
        fmt, options = SAVE[spec.format]
        out = io.BytesIO()
        img.save(out, fmt, **options)
        total += out.tell()
    return total


VIPS_SAVE = {"jpeg": ".jpg[Q=85]", "webp": ".webp[Q=80]", "png": ".png[compression=6]",
             "avif": ".avif[Q=60,effort=1]"}


def vips(data: bytes, recipe: Recipe) -> int:
    """The reference: libvips' thumbnail (shrink-on-load), one thread, no cache."""
    import pyvips

    total = 0
    for spec in recipe.outputs:
        resize = spec.ops[0]
        assert isinstance(resize, Resize) and resize.width and resize.height
        img = pyvips.Image.thumbnail_buffer(
            data, resize.width, height=resize.height, size="down",
            crop="centre" if resize.mode == "fill" else "none")
        for op in spec.ops[1:]:
            if op.name == "grayscale":
                img = img.colourspace("b-w")
            elif op.name == "blur":
                img = img.gaussblur(op.sigma)  # type: ignore[attr-defined]
        total += len(img.write_to_buffer(VIPS_SAVE[spec.format]))
    return total


def vips_available() -> bool:
    try:
        import pyvips
    except (ImportError, OSError):
        return False
    pyvips.cache_set_max(0)
    return True


def ours(data: bytes, recipe: Recipe) -> int:
    return sum(len(r.data) for r in process(data, recipe))


def sources(count: int) -> dict[str, list[bytes]]:
    jpegs = [p.read_bytes() for p in images(count)]
    png = [_cached(f"png-{i}.png", lambda i=i: photo_bytes(100 + i, 2400, 1600, "PNG"))
           for i in range(2)]
    webp = [_cached(f"webp-{i}.webp", lambda i=i: photo_bytes(200 + i, 2400, 1600, "WEBP"))
            for i in range(2)]
    return {"12 MP JPEG": jpegs, "4 MP PNG": png, "4 MP WebP": webp}


def _cached(name: str, make) -> bytes:  # type: ignore[no-untyped-def]
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
    return path.read_bytes()


def throughput(fn, datas: list[bytes], recipe: Recipe) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for data in datas:
        fn(data, recipe)
    return len(datas) / (time.perf_counter() - started)


RSS_CHILD = """
import json, sys
import imgburst.worker.tasks  # a worker's imports: Celery, SQLAlchemy, Pillow
from imgburst.core.recipes import DEFAULT_RECIPE
sys.path.insert(0, {bench!r})
from imaging import naive, ours

def hwm():  # peak RSS of this process image (getrusage would include the forked parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

data = open({path!r}, "rb").read()
base = hwm()
(ours if {which!r} == "ours" else naive)(data, DEFAULT_RECIPE)
print(json.dumps({{"before": base, "peak": hwm()}}))
"""


def peak_rss(which: str, path: Path) -> dict[str, float]:
    code = RSS_CHILD.format(bench=str(Path(__file__).parent), path=str(path), which=which)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="12 MP JPEGs per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("preparing images ...", flush=True)
    inputs = sources(args.images)
    with_vips = vips_available()
    print("pyvips: " + ("reference column, one thread (VIPS_CONCURRENCY=1)" if with_vips
                        else "not installed (pip install 'pyvips[binary]'): no reference"))
    print(f"\n{'recipe':24} {'source':11} {'naive img/s':>11} {'ours img/s':>10} {'ratio':>6}"
          + (f" {'vips img/s':>10}" if with_vips else ""))
    ratios: dict[str, float] = {}
    naive_rates: dict[str, float] = {}
    for row, raw in ROWS.items():
        recipe = parse_recipe(raw)
        for source, datas in inputs.items():
            ours(datas[0], recipe), naive(datas[0], recipe)  # warm caches and code paths
            base, mine = [], []
            for _ in range(args.rounds):
                base.append(throughput(naive, datas, recipe))
                mine.append(throughput(ours, datas, recipe))
            b, m = statistics.median(base), statistics.median(mine)
            ratios[f"{row} / {source}"] = m / b
            naive_rates[f"{row} / {source}"] = b
            line = f"{row:24} {source:11} {b:11.2f} {m:10.2f} {m / b:5.2f}x"
            if with_vips:
                try:
                    v = statistics.median(throughput(vips, datas, recipe)
                                          for _ in range(args.rounds))
                    line += f" {v:10.2f}"
                except Exception as exc:  # a format this libvips build lacks
                    line += f" {'n/a':>10} ({type(exc).__name__})"
            print(line, flush=True)
    big = CACHE / "36mp.jpg"
    if not big.exists():
        big.write_bytes(photo_bytes(36, 7360, 4912))
    rss = {which: peak_rss(which, big) for which in ("ours", "naive")}
    print("\npeak RSS, 36 MP JPEG (7360x4912), default recipe, worker imports loaded:")
    for which, r in rss.items():
        print(f"  {which:5}: {r['peak']:.0f} MB (after imports {r['before']:.0f} MB)")
    default_jpeg = ratios["default recipe / 12 MP JPEG"]
    print(f"\nmedian ratio over all rows: {statistics.median(ratios.values()):.2f}x")
    row = "default recipe / 12 MP JPEG"
    table_row("imaging: default recipe, 12 MP JPEG, 1 thread", round(naive_rates[row], 2),
              round(naive_rates[row] * default_jpeg, 2), "images/s", default_jpeg)
    table_row("imaging: peak RSS, 36 MP JPEG (naive -> ours)",
              round(rss["naive"]["peak"]), round(rss["ours"]["peak"]), "MB",
              rss["ours"]["peak"] / rss["naive"]["peak"])
    print(f"RESULT imaging_default_12mp_ratio {default_jpeg:.2f} x")
    print(f"RESULT imaging_median_ratio {statistics.median(ratios.values()):.2f} x")
    print(f"RESULT imaging_peak_rss_36mp {rss['ours']['peak']:.0f} MB")
    print(f"RESULT imaging_peak_rss_36mp_naive {rss['naive']['peak']:.0f} MB")


if __name__ == "__main__":
    main()
