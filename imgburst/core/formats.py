"""Image formats told apart by their first bytes (never by file name)."""

from __future__ import annotations

SNIFF_BYTES = 32
SUPPORTED = ("jpeg", "png", "webp", "gif", "tiff", "bmp")


def sniff(head: bytes) -> str | None:
    """The format whose magic bytes `head` starts with, or None if it is none we accept."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    return None


def unsupported_message(head: bytes) -> str:
    """Why an input was refused, in words a user can act on."""
    if not head:
        return "unsupported format: the file is empty"
    allowed = ", ".join(f.upper() for f in SUPPORTED)
    return f"unsupported format: not one of {allowed} (judged by content, not by file name)"
