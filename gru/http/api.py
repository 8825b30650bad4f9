"""The publish API for business systems: ``POST /api/push``, ``GET /api/online``, ``GET /api/nodes``.

Authenticated with ``Authorization: Bearer <key>`` (keys from ``GRU_API_KEYS``); answers in the
ticket API's envelope, ``errorCode`` equal to the HTTP status. The description a client can
generate code from is served at ``/api/openapi.json``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from gru import metrics
from gru.emitter import SystemSender
from gru.errors import Code, GruError
from gru.http.openapi import openapi_document
from gru.http.responses import error_response, ok_response, status_response

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
PUSH_FIELDS = {"groupId", "target", "content", "expire"}
# socket-side codes the services raise, as HTTP statuses (other negative codes are bad input: 400)
HTTP_STATUS = {Code.TARGET_OFFLINE: 404, Code.DELIVERY_UNAVAILABLE: 503, Code.STATE_UNAVAILABLE: 503,
               Code.SERVER_ERROR: 500}


def api_blueprint(sender: SystemSender, api_keys: dict[str, str], max_body: int) -> Blueprint:
    """The publish API over ``sender``; ``api_keys`` maps each key to its name (empty: every call is 401)."""
    blueprint = Blueprint("gru_api", __name__, url_prefix="/api")
    checked = _Keys(api_keys)

    @blueprint.route("/push", methods=ALL_METHODS)
    def push():
        return _serve("push", "POST", checked, lambda name: _push(sender, name, max_body))

    @blueprint.route("/online", methods=ALL_METHODS)
    def online():
        return _serve("online", "GET", checked, lambda name: _online(sender))

    @blueprint.route("/nodes", methods=ALL_METHODS)
    def nodes():
        return _serve("nodes", "GET", checked, lambda name: {"nodes": sender.nodes()})

    @blueprint.route("/openapi.json")
    def openapi():
        return jsonify(openapi_document())

    @blueprint.errorhandler(Exception)
    def unexpected(exc: Exception):  # JSON even inside a host application with HTML error pages
        if isinstance(exc, HTTPException):
            return status_response(exc.code or 500, exc.name.lower())
        log.exception("api: unexpected error")
        return error_response(GruError(Code.INTERNAL))

    return blueprint


class _Keys:
    """Constant-time lookup of an API key's name."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = [(key.encode(), name) for key, name in keys.items()]

    def name_of(self, header: str | None) -> str | None:
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        candidate = presented.strip().encode()
        found = None
        for key, name in self._keys:  # no early exit: timing does not tell which key is close
            if hmac.compare_digest(key, candidate):
                found = name
        return found


def _serve(endpoint: str, method: str, keys: _Keys, action: Callable[[str], dict]) -> Response:
    """Method check, key check, action, envelope, one log line and one metric per request."""
    started = time.perf_counter()
    g.gru_api_name = "-"
    if request.method != method:
        response = error_response(GruError(Code.METHOD_NOT_ALLOWED, f"method {request.method} not allowed: use {method}"))
        response.headers["Allow"] = method
    elif (name := keys.name_of(request.headers.get("Authorization"))) is None:
        response = status_response(401, "missing or invalid API key: send Authorization: Bearer <key>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="gru"'
    else:
        g.gru_api_name = name
        try:
            response = ok_response(action(name))
        except GruError as exc:
            response = status_response(_http_status(exc.code), exc.message)
    response.headers["Cache-Control"] = "no-store"
    metrics.api_answered(endpoint, response.status_code)
    log.info("api %s key=%s status=%s ms=%.1f", endpoint, g.gru_api_name, response.status_code,
             (time.perf_counter() - started) * 1000)
    return response


def _push(sender: SystemSender, name: str, max_body: int) -> dict:
    body = _json_body(max_body)
    unknown = sorted(set(body) - PUSH_FIELDS)
    if unknown:
        raise GruError(Code.BAD_REQUEST, f"unknown field: {', '.join(unknown)[:100]}")
    message = sender.push(name, body.get("content"), group=body.get("groupId"), target=body.get("target"),
                          expire=body.get("expire", 0))
    return {"id": message.id, "createTime": message.create_time, "queued": message.queued}


def _online(sender: SystemSender) -> dict:
    group = request.args.get("groupId")
    if group is None:
        raise GruError(Code.BAD_REQUEST, "missing parameter: groupId")
    online = sender.online(group)
    return {"groupId": group, "online": online}


def _json_body(max_body: int) -> dict:
    if request.content_length is not None and request.content_length > max_body:
        raise GruError(Code.PAYLOAD_TOO_LARGE, f"request body is larger than {max_body} bytes")
    raw = request.stream.read(max_body + 1)
    if len(raw) > max_body:
        raise GruError(Code.PAYLOAD_TOO_LARGE, f"request body is larger than {max_body} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GruError(Code.BAD_REQUEST, "body is not valid JSON") from None
    except RecursionError:
        raise GruError(Code.BAD_REQUEST, "body is nested too deeply") from None
    if not isinstance(body, dict):
        raise GruError(Code.BAD_REQUEST, "body must be a JSON object")
    return body


def _http_status(code: Code) -> int:
    if code > 0:
        return int(code)
    return HTTP_STATUS.get(code, 400)
