"""One-time dashboard links: a key holder asks for a login code; the dashboard trades the
code for that key, once.

Why: a link that carried the key itself (`/#key=...`) left the key in terminal
scroll-back and logs. A code works once and within `LOGIN_TTL_S`; Redis holds only the
code's digest as a name and the key sealed with the code, useless without it.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import redis
from flask import Blueprint, Response, jsonify, request

from imgburst.api import auth
from imgburst.api.errors import Problem
from imgburst.api.services import services

bp = Blueprint("logins", __name__, url_prefix="/api/v1")

LOGIN_TTL_S = 900
CODE_RE = re.compile(r"[A-Za-z0-9_-]{32}")
_PREFIX = "imgburst:login:"


def _name(code: str) -> str:
    return _PREFIX + hashlib.sha256(code.encode()).hexdigest()


def _seal(data: bytes, code: str) -> bytes:
    """XOR with a pad drawn from the code: the code is random and used once, so the pad is
    too (and the same call unseals)."""
    pad = hashlib.shake_256(b"imgburst-login\0" + code.encode()).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _unavailable() -> Problem:
    return Problem(503, "Broker unavailable", "login codes live in the broker's Redis, which "
                   "did not answer; try again shortly", headers={"Retry-After": "5"})


@bp.post("/login-links")
def create_link() -> tuple[Response, int]:
    """A code for the caller's own key (the before-request check has accepted it)."""
    svc = services()
    if not svc.settings.auth:
        raise Problem(400, "Authentication is off", "IMGBURST_AUTH=off: the dashboard needs "
                      "no key; open it without a link")
    key = auth.presented_key()
    assert key is not None  # the before-request check refused the request otherwise
    code = secrets.token_urlsafe(24)
    try:
        svc.redis.set(_name(code), _seal(key.encode(), code), ex=LOGIN_TTL_S)
    except redis.RedisError:
        raise _unavailable() from None
    return _no_store(jsonify({"code": code, "path": f"/#login={code}",
                              "expires_in": LOGIN_TTL_S})), 201


@bp.post("/login")
def redeem() -> Response:
    """The key a code stands for, once; the code is gone after this answer."""
    body = request.get_json(silent=True)
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not CODE_RE.fullmatch(code):
        raise Problem(400, "Invalid login code", 'send a JSON body {"code": "..."} with the '
                      "code of a dashboard link (the part after #login=)", field="code")
    try:
        sealed = services().redis.getdel(_name(code))  # atomic: two tabs can't both win
    except redis.RedisError:
        raise _unavailable() from None
    if sealed is None:
        raise Problem(404, "Login link used or expired", f"a dashboard link works once, within "
                      f"{LOGIN_TTL_S // 60} minutes: run `imgburst login` for a new one, or "
                      "give the key in the dashboard's key form", field="code")
    return _no_store(jsonify({"key": _seal(sealed, code).decode()}))
