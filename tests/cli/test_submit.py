"""`imgburst submit`'s upload: the files it picks from a folder; its body, the bytes
`requests` would send, streamed from the files one at a time, its length declared up
front; a file that changes or vanishes stops the upload saying which; a folder more than
one batch may hold, cut into as few bodies as fit."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from urllib3.filepost import encode_multipart_formdata

from imgburst.cli.api_client import ApiError, Limits, api_limits, collect_files, input_place
from imgburst.cli.loadgen.workload import Workload, WorkloadError
from imgburst.cli.multipart import LocalImage, MultipartFiles, UploadError, fitting_parts
from imgburst.cli.submit import check_name
from imgburst.core.settings import Settings

SIZES = {"a.jpg": 255_233, 'say "cheese"\r\n.png': 510_465, "Ünïcødé 写真.webp": 3,
         "empty.gif": 0}  # quotes and line breaks too: urllib3 percent-encodes them
SENT_AS = ["day1/a.jpg", 'say "cheese"\r\n.png', "Ünïcødé 写真.webp", "sub/dir/empty.gif"]


def test_a_folder_gives_its_images_by_suffix_in_any_case_and_skips_hidden_ones(tmp_path):
    names = ["b.JPG", "a.heic", "IMG_0002.jpeg", "scan.TIFF", "sub/c.avif", "sub/d.png",
             "notes.txt", "raw.cr2", ".hidden.jpg", "._b.JPG", ".git/logo.png",
             "sub/.thumbnails/c.png", "folder.jpg/inside.webp"]
    for name in names:  # "folder.jpg" becomes a folder: only files are images
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    picked = collect_files((tmp_path,))  # each sent by its path inside the folder
    assert [image.name for image in picked] == [
        "IMG_0002.jpeg", "a.heic", "b.JPG", "folder.jpg/inside.webp", "scan.TIFF",
        "sub/c.avif", "sub/d.png"]
    assert all(image.path == tmp_path / image.name for image in picked)
    named = tmp_path / "notes.txt"  # a file named on the command line is sent as named
    assert collect_files((named, tmp_path / "sub")) == [
        LocalImage(named, "notes.txt"), LocalImage(tmp_path / "sub/c.avif", "c.avif"),
        LocalImage(tmp_path / "sub/d.png", "d.png")]
    hidden = tmp_path / ".git"  # a hidden folder named on purpose is read
    assert collect_files((hidden,)) == [LocalImage(hidden / "logo.png", "logo.png")]
    assert [name for name, _ in Workload.from_directory(tmp_path).images] == [
        image.name for image in picked]  # loadgen's too
    forks = tmp_path / "forks"
    forks.mkdir()
    (forks / "._b.JPG").write_bytes(b"x")
    with pytest.raises(WorkloadError, match="hidden files are skipped"):
        Workload.from_directory(forks)


@pytest.mark.parametrize(("name", "folders", "stem"), [
    ("day1/IMG_0001.JPG", "day1", "IMG_0001"), ("a.jpg", ".", "a"),
    ("../../etc/x.jpg", "etc", "x"), ("/abs/./y.png", "abs", "y"), ("..", ".", "job-id"),
])
def test_fetch_writes_under_the_inputs_folders_and_never_outside_out(name, folders, stem):
    assert input_place({"input": name, "id": "job-id"}) == (Path(folders), stem)


class _ApiAnswering:
    """Stands in for `Client` where only its answer to GET /api/v1/limits matters."""

    def __init__(self, status: int) -> None:
        self.status = status

    def json(self, method: str, path: str) -> None:
        raise ApiError(f"HTTP {self.status} for {method} {path}", self.status)


def test_limits_come_from_this_environment_only_when_the_api_is_too_old_to_say(tmp_path):
    settings = Settings.from_env({"IMGBURST_HOME": str(tmp_path), "IMGBURST_MAX_FILES": "7"})
    assert api_limits(_ApiAnswering(404), settings) == Limits(7, 512 << 20, 50 << 20)
    with pytest.raises(ApiError):  # any other answer is the API's problem to report
        api_limits(_ApiAnswering(503), settings)


def test_a_name_the_api_would_refuse_stops_submit_before_it_sends():
    check_name("x" * 200, 1)
    check_name("x" * 194, 3)  # "... (3/3)"
    for name, count in (("x" * 201, 1), ("x" * 195, 3), ("   ", 1), ("tab\there", 1)):
        with pytest.raises(click.BadParameter):
            check_name(name, count)


def make_files(folder: Path) -> list[LocalImage]:
    files = []
    for (name, size), sent_as in zip(SIZES.items(), SENT_AS, strict=True):
        path = folder / name
        path.write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
        files.append(LocalImage(path, sent_as))
    return files


def read_all(body: MultipartFiles, size: int) -> bytes:
    out = bytearray()
    while chunk := body.read(size):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("size", [1, 4093, 16384, 1 << 20])
def test_the_body_is_what_urllib3_encodes_and_as_long_as_declared(tmp_path, size):
    files = make_files(tmp_path)
    fields = {"recipe": '{"outputs": [{"name": "ü"}]}', "preset": "avatar"}
    body = MultipartFiles(fields, files)
    expected, content_type = encode_multipart_formdata(
        list(fields.items()) + [("files", (f.name, f.path.read_bytes())) for f in files],
        boundary=body.boundary)
    seen: list[int] = []
    body.on_read = seen.append
    assert body.content_type == content_type
    assert len(body) == len(expected)
    assert read_all(body, size) == expected
    assert sum(seen) == len(expected) and body.tell() == len(expected)


def test_one_file_is_open_at_a_time(tmp_path):
    files = [LocalImage(tmp_path / f"p{i}.jpg", f"p{i}.jpg") for i in range(40)]
    for image in files:
        image.path.write_bytes(os.urandom(50_000))
    body = MultipartFiles({}, files)
    before = len(os.listdir("/proc/self/fd"))
    most = 0
    while body.read(8192):
        most = max(most, len(os.listdir("/proc/self/fd")) - before)
    assert most == 1
    assert len(os.listdir("/proc/self/fd")) == before  # the last one closed too


@pytest.mark.parametrize(("change", "words"), [
    (lambda p: p.write_bytes(b"short"), "got shorter while it was being uploaded"),
    (lambda p: p.write_bytes(p.read_bytes() + b"more"), "grew while it was being uploaded"),
    (lambda p: p.unlink(), "can't read"),
])
def test_a_file_changed_after_the_length_was_declared_stops_the_upload(tmp_path, change,
                                                                       words):
    files = make_files(tmp_path)
    body = MultipartFiles({}, files)
    change(files[1].path)
    with pytest.raises(UploadError) as raised:
        read_all(body, 65536)
    assert words in raised.value.message and str(files[1].path) in raised.value.message


@pytest.mark.parametrize(("max_files", "max_bytes"), [(3, 1 << 30), (1000, 30_000),
                                                      (4, 25_000), (1, 1 << 30)])
def test_fitting_parts_are_as_few_as_fit_and_keep_the_order(tmp_path, max_files, max_bytes):
    sizes = [9_000, 1_000, 12_000, 0, 7_500, 40_000, 3_000, 11_000, 500, 8_000]
    files = []
    for i, size in enumerate(sizes):
        files.append(LocalImage(tmp_path / f"p{i:02}.jpg", f"day{i % 3}/p{i:02}.jpg"))
        files[-1].path.write_bytes(b"x" * size)
    fields = {"recipe": '{"outputs": [{"name": "thumb"}]}'}
    parts = fitting_parts(fields, files, max_files, max_bytes)
    assert [p for part in parts for p in part] == files  # every file once, in order
    for i, part in enumerate(parts):
        assert len(part) <= max_files
        body = len(MultipartFiles(fields, part))
        assert body <= max_bytes or len(part) == 1  # a file alone over the limit: its own
        if i + 1 < len(parts):  # greedy: the next file would not have fitted
            grown = part + parts[i + 1][:1]
            assert len(grown) > max_files or len(MultipartFiles(fields, grown)) > max_bytes
    assert fitting_parts(fields, [], max_files, max_bytes) == []
