"""The JSON shapes shared by every HTTP endpoint: ``{"success", "errorCode", "msg"[, "data"]}``."""

from __future__ import annotations

from flask import Response, jsonify

from gru.errors import Code, GruError


def error_response(error: GruError) -> Response:
    """JSON body whose ``errorCode`` equals the HTTP status."""
    return status_response(int(error.code), error.message)


def status_response(status: int, message: str) -> Response:
    """The error envelope for any HTTP status."""
    response = jsonify({"success": False, "errorCode": status, "msg": message})
    response.status_code = status
    return response


def ok_response(data: dict) -> Response:
    """The success envelope of the contract."""
    return jsonify({"success": True, "errorCode": int(Code.OK), "msg": "", "data": data})
