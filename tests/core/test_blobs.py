"""Blob store: the same contract on a local directory and on Azurite (real Azure protocol)."""

from __future__ import annotations

import uuid

import pytest
from conftest import settings_for

from imgburst.core.blobs import (
    AzureBlobStore,
    BlobError,
    BlobNotFound,
    BlobUnavailable,
    LocalBlobStore,
    blob_store_from_settings,
    display_name,
    input_path,
    output_path,
    safe_name,
    upload_job,
)


@pytest.fixture(params=["local", pytest.param("azurite", marks=pytest.mark.services)])
def blobs(request, tmp_path):
    env = {"IMGBURST_HOME": str(tmp_path), "IMGBURST_BLOB_CONTAINER": f"t{uuid.uuid4().hex[:10]}"}
    if request.param == "azurite":
        env["AZURE_STORAGE_CONNECTION_STRING"] = request.getfixturevalue("azurite")
    store = blob_store_from_settings(settings_for(env))
    assert isinstance(store, AzureBlobStore if request.param == "azurite" else LocalBlobStore)
    return store


def test_put_get_head_list(blobs):
    blobs.ping()
    blobs.put("inputs/b/j/a.jpg", b"\xff\xd8\xffabc", content_type="image/jpeg")  # container made
    blobs.put("inputs/b/j/a.jpg", b"\xff\xd8\xffxyz")  # overwrite, not a second blob
    blobs.put("inputs/b/k/b.png", b"png")
    assert blobs.get("inputs/b/j/a.jpg") == b"\xff\xd8\xffxyz"
    assert blobs.head("inputs/b/j/a.jpg", 3) == b"\xff\xd8\xff"
    listed = list(blobs.list("inputs/b/"))
    assert [(b.name, b.size) for b in listed] == [("inputs/b/j/a.jpg", 6), ("inputs/b/k/b.png", 3)]
    assert [b.name for b in blobs.list("inputs/b/k")] == ["inputs/b/k/b.png"]


def test_list_page_goes_round_a_folder_a_page_at_a_time(blobs):
    """The reconciler's sweep of uploaded inputs: a cursor, never the whole folder at once."""
    import time

    names = [f"inputs/b{i // 3}/j{i}/input.jpg" for i in range(7)]
    for name in names:
        blobs.put(name, b"x")
    blobs.put("outputs/b0/j0/thumb.webp", b"y")
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = blobs.list_page("inputs/", cursor, 3)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert [b.name for b in seen] == sorted(names) and pages == 3
    assert all(b.modified is not None and abs(b.modified - time.time()) < 120 for b in seen)


def test_a_large_blob_from_a_view_comes_back_byte_for_byte(tmp_path):
    """Local writes go in WRITE_CHUNK pieces: every piece, the short last one included."""
    from imgburst.core.blobs import WRITE_CHUNK

    store = LocalBlobStore(tmp_path, "c")
    data = bytes(range(256)) * (3 * WRITE_CHUNK // 256) + b"tail!"
    store.put("inputs/b/j/big.bin", memoryview(data)[1:])  # a view, as uploads are stored
    assert store.get("inputs/b/j/big.bin") == data[1:]
    store.put("inputs/b/j/big.bin", b"")
    assert store.get("inputs/b/j/big.bin") == b""


def test_delete_is_idempotent_and_leaves_no_folders(blobs):
    blobs.put("inputs/b/j/a.jpg", b"a")
    blobs.put("inputs/b/k/b.png", b"b")
    blobs.delete("inputs/b/j/a.jpg")
    blobs.delete("inputs/b/j/a.jpg")  # again: not an error (deletes are retried)
    assert [b.name for b in blobs.list("inputs/")] == ["inputs/b/k/b.png"]
    blobs.delete("inputs/b/k/b.png")
    assert list(blobs.list("")) == []  # the container stays, empty
    if isinstance(blobs, LocalBlobStore):
        assert [p.name for p in (blobs.root / blobs.container).iterdir()] == []
    blobs.put("inputs/b/j/a.jpg", b"again")  # into folders just removed
    assert blobs.get("inputs/b/j/a.jpg") == b"again"


def test_other_container_and_missing(blobs):
    other = f"o{uuid.uuid4().hex[:10]}"
    with pytest.raises(BlobNotFound):
        list(blobs.list("", container=other))
    blobs.put("pics/cat.jpg", b"x", container=other)
    assert [b.name for b in blobs.list("pics/", container=other)] == ["pics/cat.jpg"]
    with pytest.raises(BlobNotFound):
        blobs.get("pics/dog.jpg", container=other)
    assert not issubclass(BlobNotFound, BlobUnavailable)


@pytest.mark.slow
def test_unreachable_azure_is_transient():
    env = {"AZURE_STORAGE_CONNECTION_STRING":
           "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
           "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"}
    store = blob_store_from_settings(settings_for(env))
    with pytest.raises(BlobUnavailable):
        store.get("inputs/x")


def test_an_upload_is_known_by_its_place_and_a_users_blob_never():
    """The orphan sweep removes what `upload_job` names: only the API's own uploads, never
    a user's blob that happens to lie under `inputs/` of the service's container."""
    batch, job = uuid.uuid4().hex, uuid.uuid4().hex
    assert upload_job(input_path(batch, job, "jpeg")) == job
    for users in ("inputs/x/y/me.jpg", "inputs/holiday.jpg", f"inputs/{batch}/notes.txt",
                  f"inputs/{batch}/{job}/deeper/input.jpeg", f"outputs/{batch}/{job}/a.jpg",
                  f"inputs/{batch}/{job.upper()}/input.jpeg"):
        assert upload_job(users) is None, users


def test_paths_are_safe(tmp_path):
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\My Photo (1).JPG") == "My_Photo_1_.JPG"
    assert safe_name("...") == "image"
    assert input_path("b", "j", "jpeg") == "inputs/b/j/input.jpeg"  # never the file's name
    assert input_path("b", "j", None) == "inputs/b/j/input.bin"
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Users\\me\\My Photo (1).JPG") == "My Photo (1).JPG"
    assert display_name("evil\x00\nname\x1b[31m.jpg") == "evilname[31m.jpg"
    assert display_name("") == "image" and len(display_name("x" * 1000)) == 255
    assert display_name("day1/./IMG_0001.JPG") == "day1/IMG_0001.JPG"  # a folder's upload
    assert display_name("a\\b\\c.png") == "a/b/c.png"
    assert display_name("/home/me/c.png") == "c.png" and display_name("a/../../c.png") == "c.png"
    deep = display_name("/".join(["folder"] * 60) + "/c.png")
    assert len(deep) <= 255 and deep.endswith("folder/c.png") and not deep.startswith("/")
    assert output_path("b", "j", "thumb", "webp") == "outputs/b/j/thumb.webp"
    local = LocalBlobStore(tmp_path, "imgburst")
    for bad in ("../x", "/abs", "a/../../x"):
        with pytest.raises(BlobError):
            local.put(bad, b"x")
