"""Errors as RFC 9457 problem details (`application/problem+json`), for every 4xx and 5xx."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger("imgburst.api")
STORE_RETRY_AFTER_S = 5


class Problem(Exception):
    """Raise to answer with a problem document; `field` names the offending input."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def refuse_unknown(given: Iterable[Any], known: tuple[str, ...], what: str = "field",
                   prefix: str = "") -> None:
    """Refuse a field, parameter or part the route does not take: ignored, a misspelt one
    (`recipie`, `imgaes`) would quietly become its default."""
    unknown = sorted({str(name) for name in given} - set(known))
    if unknown:
        name = f"{prefix}{unknown[0]}"
        raise Problem(400, f"Unknown {what}", f"{name} is not a known {what} (known: "
                      f"{', '.join(known)})", field=name)


def problem_body(status: int, title: str, detail: str,
                 field: str | None = None) -> dict[str, Any]:
    """The problem document itself (also written by the HTTP server, outside Flask)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    if field is not None:
        body["field"] = field
    return body


def upload_too_large(max_mb: int) -> str:
    """Said alike by Flask and by the HTTP server, whichever refuses the body."""
    return (f"the upload is larger than {max_mb} MB (IMGBURST_MAX_UPLOAD_MB); split it into "
            "several batches")


def problem_response(status: int, title: str, detail: str, field: str | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    response = jsonify(problem_body(status, title, detail, field))
    response.status_code = status
    response.mimetype = "application/problem+json"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def log_refusal(status: int, title: str, detail: str) -> None:
    """One line per refused request, never a traceback: whatever a client sends, the log
    grows by a line, and the line says which request and why (details name fields, never
    keys or secrets)."""
    if request:
        log.info("%d %s %s: %s: %s", status, request.method, request.path, title, detail[:200])


def register_error_handlers(app: Flask) -> None:
    max_mb = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        log_refusal(exc.status, exc.title, exc.detail)
        return problem_response(exc.status, exc.title, exc.detail, exc.field, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_exc: RequestEntityTooLarge) -> Response:
        """Werkzeug raises the same exception for a body too large, too many form parts
        and a text field too large: say which it was."""
        if (request.content_length or 0) > max_mb << 20:
            detail = upload_too_large(max_mb)
        else:
            detail = (f"the form has too many parts (at most {app.config['MAX_FORM_PARTS']}) "
                      f"or a text field over {app.config['MAX_FORM_MEMORY_SIZE'] >> 10} KB; "
                      "nothing was stored")
        log_refusal(413, "Request too large", detail)
        return problem_response(413, "Request too large", detail)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        log_refusal(exc.code or 500, exc.name, exc.description or exc.name)
        response = problem_response(exc.code or 500, exc.name, exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(sa_exc.OperationalError)
    @app.errorhandler(sa_exc.InterfaceError)
    @app.errorhandler(sa_exc.TimeoutError)
    def _store_down(exc: Exception) -> Response:
        """The job store is unreachable: a retryable 503, never a 500 (and never the URL)."""
        log.warning("job store unavailable: %s", type(exc).__name__)
        return problem_response(503, "Job store unavailable", "the job store did not answer; "
                                "nothing was recorded, try again shortly",
                                headers={"Retry-After": str(STORE_RETRY_AFTER_S)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error",
                                f"unexpected {type(exc).__name__}; the server log has details")
