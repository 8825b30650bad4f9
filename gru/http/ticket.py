"""``GET /ticket``: translate the HTTP request into a call on the ticket service and back."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, request

from gru.errors import Code, GruError
from gru.http.responses import error_response, ok_response
from gru.services.tickets import TicketService

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def ticket_blueprint(tickets: TicketService) -> Blueprint:
    """A blueprint serving ``/ticket`` with the given service."""
    blueprint = Blueprint("gru_ticket", __name__)

    @blueprint.route("/ticket", methods=ALL_METHODS)
    def ticket():
        started = time.perf_counter()
        if request.method != "GET":
            response = error_response(GruError(Code.METHOD_NOT_ALLOWED, f"method {request.method} not allowed: use GET"))
            response.headers["Allow"] = "GET, HEAD"
            return response
        try:
            response = ok_response(tickets.issue(request.args, default_addr=request.host_url.rstrip("/")))
        except GruError as exc:
            response = error_response(exc)
        response.headers["Cache-Control"] = "no-store"
        log.info("ticket user=%s type=%s status=%s ms=%.1f", request.args.get("userId", "")[:64],
                 request.args.get("userType", "")[:8], response.status_code,
                 (time.perf_counter() - started) * 1000)
        return response

    return blueprint
