"""A streamed image's content digest: same bytes match, other bytes don't, and a digest
recorded before XXH3-128 (bare SHA-256 hex) still compares right."""

from __future__ import annotations

import hashlib

from imgburst.core.content_digest import PREFIX, ContentDigest


def test_a_digest_matches_the_same_bytes_only_whatever_holds_them():
    data = bytes(range(256)) * 40
    digest = ContentDigest.of(data)
    assert digest.value.startswith(PREFIX) and len(digest.value) <= 64  # the column's size
    assert digest.matches(ContentDigest.of(memoryview(bytearray(data))).value)
    changed = bytearray(data)
    changed[-1] ^= 1
    assert not digest.matches(ContentDigest.of(bytes(changed)).value)
    assert not digest.matches(None)


def test_a_sha256_recorded_before_the_change_is_compared_as_sha256():
    data = b"\xff\xd8 a photo" * 1000
    digest = ContentDigest.of(data)
    assert digest.matches(hashlib.sha256(data).hexdigest())
    assert not digest.matches(hashlib.sha256(data + b"!").hexdigest())
