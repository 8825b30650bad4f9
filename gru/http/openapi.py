"""The OpenAPI 3.1 description of the publish API, served at ``/api/openapi.json``."""

from __future__ import annotations

from gru import __version__

ERROR = {"$ref": "#/components/schemas/Error"}


def _envelope(data: dict) -> dict:
    return {"type": "object", "required": ["success", "errorCode", "msg", "data"],
            "properties": {"success": {"const": True}, "errorCode": {"const": 0}, "msg": {"type": "string"},
                           "data": data}}


def _answers(ok: dict, *errors: int) -> dict:
    reasons = {400: "bad parameter or body (msg names it)", 401: "missing or invalid API key",
               404: "unicast target is offline", 405: "wrong method", 413: "body too large",
               500: "unexpected error", 503: "Redis or presence unavailable: nothing was sent"}
    answers = {"200": {"description": "success", "content": {"application/json": {"schema": _envelope(ok)}}}}
    for status in errors:
        answers[str(status)] = {"description": reasons[status],
                                "content": {"application/json": {"schema": ERROR}}}
    return answers


PUSH_BODY = {
    "type": "object", "additionalProperties": False, "required": ["content"],
    "description": "Exactly one of groupId (broadcast to the group) and target (unicast to every connection of a user).",
    "properties": {
        "groupId": {"type": ["integer", "string"], "description": "group to broadcast to; 10 and \"10\" are one group"},
        "target": {"type": "object", "required": ["id", "type"],
                   "properties": {"id": {"type": ["integer", "string"]}, "type": {"type": "integer"}}},
        "content": {"type": "string", "description": "opaque string, at most GRU_MAX_CONTENT bytes of UTF-8"},
        "expire": {"type": "integer", "minimum": 0, "description": "unicast only: seconds the message waits for "
                   "an offline target (at most GRU_MAX_EXPIRE); 0 or absent: an offline target is a 404"},
    },
}

NODE = {"type": "object", "required": ["name", "addr", "connections", "state"],
        "properties": {"name": {"type": "string"}, "addr": {"type": ["string", "null"]},
                       "connections": {"type": "integer"}, "state": {"enum": ["up", "draining"]}}}


def openapi_document() -> dict:
    """The document; built on request so it always matches the running version."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Gru publish API", "version": __version__,
                 "description": "Push to classroom groups and users without holding a socket. Messages arrive "
                                "as socket messages do, with from = {\"id\": \"system\", \"type\": -1, "
                                "\"name\": <API key name>}."},
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "a key from GRU_API_KEYS (NAME:KEY,...)"}},
            "schemas": {"Error": {"type": "object", "required": ["success", "errorCode", "msg"],
                                  "properties": {"success": {"const": False},
                                                 "errorCode": {"type": "integer", "description": "= HTTP status"},
                                                 "msg": {"type": "string"}}}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/api/push": {"post": {
                "summary": "Broadcast to a group or unicast to a user",
                "requestBody": {"required": True, "content": {"application/json": {"schema": PUSH_BODY}}},
                "responses": _answers({"type": "object", "properties": {
                    "id": {"type": "integer"}, "createTime": {"type": "integer"},
                    "queued": {"type": "boolean", "description": "kept for an offline target (expire > 0)"}}},
                                      400, 401, 404, 405, 413, 500, 503)}},
            "/api/online": {"get": {
                "summary": "Users online in a group, anywhere in the deployment",
                "parameters": [{"name": "groupId", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": _answers({"type": "object", "properties": {
                    "groupId": {"type": "string"},
                    "online": {"type": "array", "items": {"type": ["integer", "string"]}}}}, 400, 401, 405, 503)}},
            "/api/nodes": {"get": {
                "summary": "Live long-connection nodes",
                "responses": _answers({"type": "object", "properties": {"nodes": {"type": "array", "items": NODE}}},
                                      401, 405, 503)}},
        },
    }
