"""``GET /ticket``: translate the HTTP request into a call on the ticket service and back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Blueprint, request

from gru.errors import Code, GruError
from gru.http.responses import error_response, ok_response
from gru.logs import log_safe
from gru.services.tickets import TicketService

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def ticket_blueprint(tickets: TicketService, origin_allowed: Callable[[str | None, str | None], bool]) -> Blueprint:
    """A blueprint serving ``/ticket`` with the given service, to browsers of the allowed origins."""
    blueprint = Blueprint("gru_ticket", __name__)

    def allowed(origin: str | None) -> bool:
        return origin_allowed(origin, request.host_url.rstrip("/"))

    @blueprint.after_request
    def cors(response):
        origin = request.headers.get("Origin")
        if origin and allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    @blueprint.route("/ticket", methods=[*ALL_METHODS, "OPTIONS"])
    def ticket():
        started = time.perf_counter()
        origin = request.headers.get("Origin")
        if not allowed(origin):
            log.warning("ticket refused: origin %s is not allowed", log_safe(origin))
            return error_response(GruError(Code.ORIGIN_NOT_ALLOWED, f"origin {origin[:100]} is not allowed"))
        if request.method == "OPTIONS":
            return "", 204, {"Access-Control-Allow-Methods": "GET", "Access-Control-Max-Age": "600"}
        if request.method not in ("GET", "HEAD"):
            response = error_response(GruError(Code.METHOD_NOT_ALLOWED, f"method {request.method} not allowed: use GET"))
            response.headers["Allow"] = "GET, HEAD"
            return response
        try:
            response = ok_response(tickets.issue(request.args, default_addr=request.host_url.rstrip("/")))
        except GruError as exc:
            response = error_response(exc)
        response.headers["Cache-Control"] = "no-store"
        log.info("ticket user=%s type=%s status=%s ms=%.1f", log_safe(request.args.get("userId", ""), 64),
                 log_safe(request.args.get("userType", ""), 8), response.status_code,
                 (time.perf_counter() - started) * 1000)
        return response

    return blueprint
