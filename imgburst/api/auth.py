"""Who is calling: a bearer key on every `/api/v1` route, and what that key may see.

A batch belongs to the owner of the key that created it; any other non-admin key gets
404 for it, its jobs and its outputs (not 403: it does not learn the batch exists).
Admin keys see everything. With `IMGBURST_AUTH=off` there are no keys: every caller is
an anonymous admin (local demos only; the API says so loudly at start).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, g, request

from imgburst.api.errors import Problem
from imgburst.core.keys import match
from imgburst.core.settings import Settings, SettingsError

log = logging.getLogger("imgburst.api")
PUBLIC_ENDPOINTS = {"openapi.openapi", "logins.redeem"}  # a login code stands in for the key
SIGNED_ENDPOINTS = {"jobs.get_output"}  # a valid signature stands in for the key
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="imgburst"'}


@dataclass(frozen=True)
class Principal:
    owner: str | None
    admin: bool

    def sees(self, owner: str | None) -> bool:
        return self.admin or owner == self.owner

    @property
    def scope(self) -> str | None:
        """The owner a listing is restricted to; None (everything) for admins."""
        return None if self.admin else self.owner


OPEN = Principal(owner=None, admin=True)


def current() -> Principal:
    return g.get("principal", OPEN)


def check_auth_settings(settings: Settings) -> None:
    """Refuse to serve without keys unless auth is explicitly off."""
    if settings.auth and not settings.api_keys:
        raise SettingsError("IMGBURST_API_KEYS", "no API keys are configured: set "
                            "IMGBURST_API_KEYS (and IMGBURST_ADMIN_KEYS; `imgburst keygen` makes "
                            "keys), or IMGBURST_AUTH=off for a local demo")
    if not settings.auth:
        log.warning("AUTHENTICATION IS OFF (IMGBURST_AUTH=off): anyone who reaches this port "
                    "can submit, read and cancel every batch")


def presented_key() -> str | None:
    """The bearer key of this request as sent (None without one); checked by `install`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def install(app: Flask, settings: Settings) -> None:
    check_auth_settings(settings)

    @app.before_request
    def _authenticate() -> None:
        if not settings.auth or not request.path.startswith("/api/v1/"):
            return
        if request.endpoint in PUBLIC_ENDPOINTS:
            return
        if request.endpoint in SIGNED_ENDPOINTS and "sig" in request.args:
            return  # the view checks the signature
        token = presented_key()
        if not token:
            raise Problem(401, "Authentication required", "send the header Authorization: "
                          "Bearer <API key> (`imgburst up` keeps one in $IMGBURST_HOME/api-key; "
                          "see IMGBURST_API_KEYS)", headers=CHALLENGE)
        key = match(settings.api_keys, token)
        if key is None:
            raise Problem(401, "Invalid API key", "the bearer key is not one of "
                          "IMGBURST_API_KEYS or IMGBURST_ADMIN_KEYS",
                          headers={"WWW-Authenticate": 'Bearer realm="imgburst", '
                                   'error="invalid_token"'})
        g.principal = Principal(owner=key.owner, admin=key.admin)


def require_admin(what: str) -> None:
    if not current().admin:
        raise Problem(403, "Admin key required", f"{what} needs an admin key "
                      "(IMGBURST_ADMIN_KEYS)")
