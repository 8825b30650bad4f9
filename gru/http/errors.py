"""App-wide HTTP error handlers so every error, even a 404 or a crash, has the contract's JSON shape."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gru.errors import Code, GruError
from gru.http.responses import error_response, status_response

log = logging.getLogger(__name__)


def install_error_handlers(app: Flask) -> None:
    """Answer HTTP errors and unexpected exceptions with JSON instead of HTML."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = status_response(exc.code or 500, exc.name.lower())
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")
        return error_response(GruError(Code.INTERNAL))
