"""``LegacyEngineIOServer``: one python-engineio server for Engine.IO 3 and 4 clients.

``handle_request`` dispatches: a request with a ``sid`` follows the protocol stored on
its session, a new session follows ``EIO`` (``4`` → upstream; ``3`` → the handler below;
anything else → upstream's 400). Both kinds of session live in ``self.sockets``, so rooms,
emits, the Redis manager and ``disconnect()`` reach them alike.

On Engine.IO 4 sessions Gru answers the polling requests where upstream fails
(:mod:`gru.sockets.engine`): POSTs (a bad body is 400 at once and closes the session) and a GET
while another waits (400, session closed). JSONP is refused on Engine.IO 4: no client of that
protocol uses it, and upstream escaped only quotes, so a message could run as script.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import engineio
import engineio.payload
from engineio import exceptions
from engineio import packet as eio_packet

from gru.sockets.engine import SERVER_MAX_DECODE_PACKETS, BoundedPollSocket, drop_session, wants_upgrade
from gru.sockets.legacy import eio3_codec as codec
from gru.sockets.legacy import version_mismatches
from gru.sockets.legacy.eio3_socket import Eio3Socket, wants_b64

log = logging.getLogger(__name__)

UTF8_DIALECTS = ("auto", "v1", "v2")


def _query_value(query: dict, name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class LegacyEngineIOServer(engineio.Server):
    """python-engineio's server, plus Engine.IO 3 sessions on the same path."""

    def __init__(self, *args, legacy_eio3: bool = True, legacy_max_body: int | None = None,
                 legacy_cookie: str | None = None, legacy_utf8_dialect: str = "auto", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        engineio.payload.Payload.max_decode_packets = max(engineio.payload.Payload.max_decode_packets,
                                                          SERVER_MAX_DECODE_PACKETS)  # D2
        if legacy_utf8_dialect not in UTF8_DIALECTS:
            raise ValueError(f"legacy_utf8_dialect must be one of {UTF8_DIALECTS}")
        self.legacy_eio3 = legacy_eio3
        for package, (expected, installed) in version_mismatches().items():
            log.error("%s %s is installed but the legacy adapter was written for %s", package, installed, expected)
        self.legacy_max_body = legacy_max_body or self.max_http_buffer_size
        self.legacy_cookie = legacy_cookie or None
        self.legacy_utf8_dialect = legacy_utf8_dialect

    def _trigger_event(self, event, *args, **kwargs):
        if event == "connect":
            socket = self.sockets.get(args[0])
            if type(socket) is engineio.socket.Socket:
                socket.__class__ = BoundedPollSocket  # an EIO4 session: same state, Gru's fixes
        return super()._trigger_event(event, *args, **kwargs)

    # --- dispatcher --------------------------------------------------------
    def handle_request(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        sid, version = _query_value(query, "sid"), _query_value(query, "EIO")
        socket = self.sockets.get(sid) if sid is not None else None
        if socket is not None and getattr(socket, "protocol", 4) == 3:
            return self._handle_request_eio3(environ, start_response, query)
        if sid is None and version == "3" and self.legacy_eio3:
            return self._handle_request_eio3(environ, start_response, query)
        if socket is not None and version not in (None, "4"):
            return self._respond(self._bad_request("EIO does not match the session"), environ, start_response)
        if "j" in query and version != "3":  # no EIO4 client uses JSONP; upstream escaped quotes only
            return self._respond(self._bad_request("JSONP is not supported with EIO=4: use XHR polling or a "
                                                   "websocket"), environ, start_response)
        if isinstance(socket, BoundedPollSocket) and not socket.closed:
            r = self._session_request_eio4(socket, environ, query)
            if r is not None:
                return self._respond(r, environ, start_response)
        return super().handle_request(environ, start_response)

    # --- Engine.IO 4 -------------------------------------------------------
    def _session_request_eio4(self, socket: BoundedPollSocket, environ, query: dict) -> dict | None:
        """Gru's answer to a polling request of an EIO4 session (POSTs, overlapping GETs), or None
        for upstream's."""
        method = environ["REQUEST_METHOD"]
        polling = _query_value(query, "transport") in (None, "polling") and not wants_upgrade(environ)
        if method not in ("GET", "POST") or not polling or not socket.connected or socket.upgraded \
                or self._origin_refusal(environ) is not None:
            return None
        if method == "POST":
            return self._post(socket, environ, self._ok())
        if socket.get_waiting:
            log.info("%s: overlapping polls, closing the session", socket.sid)
            self._drop(socket)
            return self._bad_request("Overlapping polls")
        return None

    # --- Engine.IO 3 -------------------------------------------------------
    def _handle_request_eio3(self, environ, start_response, query: dict):
        refusal = self._eio3_refusal(environ, query)
        if refusal is not None:
            return self._respond(self._bad_request(refusal), environ, start_response)
        method = environ["REQUEST_METHOD"]
        transport = _query_value(query, "transport")
        jsonp = _query_value(query, "j")
        jsonp_index = int(jsonp) if jsonp is not None else None
        sid = _query_value(query, "sid")
        if method == "OPTIONS":
            r = self._post_ok()
        elif sid is None:
            r = (self._handle_connect_eio3(environ, start_response, transport, jsonp_index)
                 if method == "GET" else self._bad_request("Session ID unknown"))
        else:
            r = self._handle_session_eio3(sid, method, environ, start_response, transport, jsonp_index)
        return self._respond(r, environ, start_response)

    def _eio3_refusal(self, environ: dict, query: dict) -> str | None:
        """Why a request is refused before any session logic, or None."""
        refusal = self._origin_refusal(environ)
        if refusal is not None:
            return refusal
        if _query_value(query, "transport") not in self.transports:
            return "Transport unknown"
        jsonp = _query_value(query, "j")
        if jsonp is not None and not (jsonp.isascii() and jsonp.isdigit() and len(jsonp) <= 6):
            return "Invalid JSONP index number: ASCII digits only"
        return None

    def _origin_refusal(self, environ: dict) -> str | None:
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins != [] and origin:
            allowed = self._cors_allowed_origins(environ)
            if allowed is not None and origin not in allowed:
                return "Not an accepted origin."
        return None

    def _live_socket(self, sid: str) -> Eio3Socket | None:
        """The session, after a lazy heartbeat check: an expired one is closed and forgotten."""
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed and socket.check_ping_timeout():
            return socket
        if socket is not None and socket.closed:
            self.sockets.pop(sid, None)
        return None

    def _handle_session_eio3(self, sid, method, environ, start_response, transport, jsonp_index):
        socket = self._live_socket(sid)
        if socket is None:
            return self._bad_request("Session ID unknown")
        if not socket.connected:
            return self._bad_request("Not connected")
        if socket.upgraded:
            return self._bad_request("Unexpected HTTP request")  # also a second websocket
        if method == "GET":
            return self._get_eio3(socket, environ, start_response, transport, jsonp_index)
        if method == "POST":
            return self._post(socket, environ, self._post_ok())
        return self._bad_request("Bad request method")

    def _get_eio3(self, socket: Eio3Socket, environ, start_response, transport, jsonp_index):
        upgrade = environ.get("HTTP_UPGRADE", "").lower()
        if transport == "websocket" and upgrade != "websocket":
            return self._bad_request("Invalid websocket upgrade")
        if transport == "polling" and socket.get_waiting:
            log.info("%s: overlapping polls, closing the session", socket.sid)
            self._drop(socket)
            return self._bad_request("Overlapping polls")
        try:
            packets = socket.handle_get_request(environ, start_response)
        except exceptions.EngineIOError:
            self._drop(socket)
            return self._bad_request()
        if socket.closed:
            self.sockets.pop(socket.sid, None)
        if transport == "websocket":
            return []  # the websocket is over: nothing more to answer
        return self._ok_eio3(socket, packets, jsonp_index=jsonp_index)

    def _post(self, socket: BoundedPollSocket, environ, ok: dict) -> dict:
        """A polling POST of either protocol: ``ok``, or 400 with the reason and the session closed."""
        try:
            socket.handle_post_request(environ)
        except exceptions.EngineIOError as exc:
            self._drop(socket)
            return self._bad_request(str(exc) or None)
        except Exception:  # noqa: BLE001 - one bad request must not take the worker down
            log.exception("%s: polling POST failed", socket.sid)
            self._drop(socket)
            return self._bad_request()
        return ok

    def _drop(self, socket: BoundedPollSocket) -> None:
        drop_session(self, socket)

    def _handle_connect_eio3(self, environ, start_response, transport, jsonp_index):
        """Open an EIO3 session: OPEN (and the implicit ``40``) in the first response."""
        if transport == "websocket" and environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return self._bad_request("Invalid websocket upgrade")
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = Eio3Socket(self, sid, b64=wants_b64(environ) or jsonp_index is not None,
                            jsonp=jsonp_index is not None)
        self.sockets[sid] = socket
        socket.send(eio_packet.Packet(eio_packet.OPEN, self._open_data(sid, transport)))
        ret = self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            self.sockets.pop(sid, None)
            return self._unauthorized(ret or None)
        if transport == "websocket":
            ret = socket.handle_get_request(environ, start_response)
            if socket.closed:
                self.sockets.pop(sid, None)
            return ret
        socket.connected = True
        headers = [("Set-Cookie", f"{self.legacy_cookie}={sid}; Path=/; HttpOnly")] if self.legacy_cookie else []
        try:
            return self._ok_eio3(socket, socket.poll(), headers, jsonp_index)
        except exceptions.QueueEmpty:
            return self._bad_request()

    def _open_data(self, sid: str, transport: str) -> dict:
        """The v3 handshake: milliseconds rounded, never truncated to whole seconds."""
        interval = self.ping_interval + self.ping_interval_grace_period
        return {"sid": sid, "upgrades": self._upgrades(sid, transport),
                "pingInterval": round(interval * 1000), "pingTimeout": round(self.ping_timeout * 1000)}

    def _ok_eio3(self, socket: Eio3Socket, packets: list, headers: list | None = None,
                 jsonp_index: int | None = None) -> dict:
        """A poll response in the session's framing; never an empty body (a noop instead)."""
        packets = packets or [eio_packet.Packet(eio_packet.NOOP)]
        text = codec.encode_text_payload(packets)
        if not text.isascii() and (socket.b64 or jsonp_index is not None) and socket.utf8_dialect == "v1":
            text = codec.encode_text_payload(packets, utf8_twice=True)
        if jsonp_index is not None:
            body, ctype = codec.jsonp_wrap(jsonp_index, text).encode("utf-8"), "text/javascript; charset=UTF-8"
        elif socket.b64 or (text.isascii() and not any(codec.is_binary(p) for p in packets)):
            body, ctype = text.encode("utf-8"), "text/plain; charset=UTF-8"
        else:
            body, ctype = codec.encode_binary_payload(packets), "application/octet-stream"
        return {"status": "200 OK", "headers": [*(headers or []), ("Content-Type", ctype)], "response": body}

    def _post_ok(self) -> dict:
        return {"status": "200 OK", "headers": [("Content-Type", "text/html")], "response": b"ok"}

    def _respond(self, r, environ, start_response):
        """Compression and CORS headers, as upstream applies them to its own responses."""
        if not isinstance(r, dict):
            return r
        if self.http_compression and len(r["response"]) >= self.compression_threshold:
            accepted = [e.split(";")[0].strip() for e in environ.get("HTTP_ACCEPT_ENCODING", "").split(",")]
            for encoding in accepted:
                if encoding in self.compression_methods:
                    r["response"] = getattr(self, "_" + encoding)(r["response"])
                    r["headers"] += [("Content-Encoding", encoding)]
                    break
        start_response(r["status"], r["headers"] + self._cors_headers(environ))
        return [r["response"]]
