"""API keys: parsed from `IMGBURST_API_KEYS` / `IMGBURST_ADMIN_KEYS`, matched in constant time.

An entry is `[owner=]key` or `[owner=]sha256:<64 hex>`; the second form keeps the key
itself out of the environment and the manifests (only its digest is stored). Each key
maps to an *owner*: the name before `=`, else the first 12 hex digits of its digest, so
batches stay with their owner when a named key is rotated and no key ever reaches the
job store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

OWNER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
MIN_KEY_CHARS = 16


@dataclass(frozen=True)
class ApiKey:
    owner: str
    digest: str = field(repr=False)  # sha256 hex of the key
    admin: bool = False


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """A new random key (256 bits, URL-safe)."""
    return "ib_" + secrets.token_urlsafe(32)


def parse_keys(raw: str, admin: bool = False) -> tuple[ApiKey, ...]:
    """Entries separated by commas; raises ValueError naming the entry by position (never
    by its value, which may be a secret)."""
    keys = []
    for position, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
        if not entry:
            continue
        owner, sep, secret = entry.partition("=")
        if not sep:
            owner, secret = "", entry
        elif not OWNER_RE.match(owner):
            raise ValueError(f"entry {position}: the owner before '=' must be 1-64 letters, "
                             "digits, '_', '.' or '-'")
        found = DIGEST_RE.match(secret)
        if found:
            hexdigest = found.group(1)
        elif secret.startswith("sha256:"):
            raise ValueError(f"entry {position}: sha256: must be followed by 64 lowercase hex "
                             "digits (the key's SHA-256)")
        elif len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"entry {position}: a key must have at least {MIN_KEY_CHARS} "
                             "characters (`imgburst keygen` makes one)")
        else:
            hexdigest = digest(secret)
        keys.append(ApiKey(owner or hexdigest[:12], hexdigest, admin))
    return tuple(keys)


def match(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The configured key equal to `presented`. Compares digests with `hmac.compare_digest`
    against every key (no early exit), so timing says nothing about which one is close."""
    wanted = digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, wanted):
            found = key
    return found
