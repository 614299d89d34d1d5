"""`imgburst submit`'s upload: the files it picks from a folder; the client that sends each
one (its bytes by sendfile, over a kept-alive connection), the API's refusals in words,
the resume key that finds an interrupted upload's batch again."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest

from imgburst.cli.api_client import ApiError, Client, LocalImage, collect_files, input_place
from imgburst.cli.loadgen.workload import Workload, WorkloadError
from imgburst.cli.stream import resume_key
from imgburst.cli.submit import check_name


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


def test_a_name_the_api_would_refuse_stops_submit_before_it_sends():
    check_name("x" * 200)
    for name in ("x" * 201, "   ", "tab\there"):
        with pytest.raises(click.BadParameter):
            check_name(name)


def test_the_resume_key_is_the_same_for_the_same_ask_and_differs_otherwise(tmp_path,
                                                                           monkeypatch):
    (tmp_path / "photos").mkdir()
    key = resume_key([tmp_path / "photos"], {"name": "photos"})
    monkeypatch.chdir(tmp_path)  # a relative path to the same folder: the same upload
    assert resume_key([Path("photos")], {"name": "photos"}) == key
    assert len(key) == 64
    for other in (resume_key([tmp_path], {"name": "photos"}),
                  resume_key([tmp_path / "photos"], {"name": "trip"}),
                  resume_key([tmp_path / "photos"], {"name": "photos", "preset": "web"})):
        assert other != key


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in API: answers each PUT with its body's length and digest; 429 once for
    a path ending in `busy`, a problem for one ending in `taken`; drops the connection
    after a request when told to (a server closing kept-alive connections)."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, int, str | None]] = []
    drop_after: set[str] = set()

    def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, len(body), self.headers.get("Authorization")))
        if self.path.endswith("taken"):
            self._answer(409, b'{"title": "Name taken", "detail": "other bytes", '
                              b'"field": "name"}', "application/problem+json")
        else:
            self._answer(201, b'{"bytes": %d, "sha256": "%s"}' % (
                len(body), hashlib.sha256(body).hexdigest().encode()))
        if self.path in self.drop_after:
            self.close_connection = True

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_file_goes_whole_with_the_key_and_the_connection_is_kept(tmp_path, recorder):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(bytes(range(256)) * 4000)
    client = Client(recorder, "ib_secret")
    answer = client.put_file("/api/v1/batches/b/images/a.jpg", photo)
    assert answer == {"bytes": 1_024_000, "sha256": hashlib.sha256(photo.read_bytes()).hexdigest()}
    conn = client.local.conn
    client.put_file("/api/v1/batches/b/images/b.jpg", photo)
    assert client.local.conn is conn  # kept alive: one connection for both
    assert [(p, n, auth) for p, n, auth in _Recorder.seen] == [
        ("/api/v1/batches/b/images/a.jpg", 1_024_000, "Bearer ib_secret"),
        ("/api/v1/batches/b/images/b.jpg", 1_024_000, "Bearer ib_secret")]
    empty = tmp_path / "empty.gif"
    empty.write_bytes(b"")
    assert client.put_file("/x/empty", empty)["bytes"] == 0


def test_a_kept_alive_connection_the_server_closed_is_opened_anew(tmp_path, recorder):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x" * 1000)
    _Recorder.drop_after = {"/first"}
    client = Client(recorder)
    client.put_file("/first", photo)
    assert client.put_file("/second", photo)["bytes"] == 1000  # not "can't reach"
    assert [p for p, _, _ in _Recorder.seen] == ["/first", "/second"]


def test_a_refusal_is_said_in_the_apis_words_and_nothing_answers_is_unreachable(tmp_path,
                                                                                 recorder):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    with pytest.raises(ApiError) as refused:
        Client(recorder).put_file("/api/v1/batches/b/images/taken", photo)
    assert refused.value.status == 409 and refused.value.title == "Name taken"
    assert refused.value.message == "Name taken: other bytes (field: name)"
    with pytest.raises(ApiError) as nobody:
        Client("http://127.0.0.1:9").put_file("/x", photo)
    assert nobody.value.status is None and "can't reach the imgburst API" in nobody.value.message
    with pytest.raises(click.ClickException, match="No such file"):
        Client(recorder).put_file("/x", tmp_path / "gone.jpg")
