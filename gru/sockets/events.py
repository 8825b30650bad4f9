"""``auth`` / ``msg`` / ``online`` handlers: parse the wire, call the services, emit the results.

Every event gets an answer: a result object on success, ``{"success": false, "errorCode", "msg"}``
on any refusal, so a client never waits for a reply that will not come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import socketio

from gru import metrics
from gru.errors import Code, GruError
from gru.models import Session
from gru.services.history import History
from gru.services.limits import ConnectionLimits, TokenBucket
from gru.services.messaging import Messaging
from gru.services.presence import Presence
from gru.services.sessions import Sessions
from gru.sockets.payloads import decode_group, decode_object, first_arg
from gru.sockets.rooms import group_room, user_room
from gru.sockets.timers import FixedDelayTimer

log = logging.getLogger(__name__)
FIRST_SUBSCRIPTION_WAIT = 2.0  # s an auth waits for a just-started process's Redis subscription

OK_RESULT = {"success": True, "errorCode": 0, "msg": ""}
HARD_CLOSE_DELAY = 2.0  # seconds a refused client gets to close by itself before we close it


class EventHandlers:
    """Binds the services to one ``socketio.Server``."""

    def __init__(self, sio: socketio.Server, sessions: Sessions, messaging: Messaging,
                 presence: Presence, history: History, auth_timeout: float, limits: ConnectionLimits,
                 rate: float, burst: int) -> None:
        self._sio = sio
        self._sessions = sessions
        self._messaging = messaging
        self._presence = presence
        self._history = history
        self._auth_timeout = auth_timeout
        self._limits = limits
        self._rate = rate
        self._burst = burst
        self._pending: dict[str, str] = {}  # unauthenticated Engine.IO session → client address
        self._refused: dict[str, GruError] = {}  # sessions refused at their handshake → what to tell them
        self._buckets: dict[str, TokenBucket] = {}
        self._accepting = True
        self._auth_deadlines = FixedDelayTimer(auth_timeout, self._expire_unauthenticated,
                                               sio.start_background_task, sio.sleep)

    def register(self) -> None:
        """Attach every handler to the server (and the admission of Engine.IO sessions)."""
        self._sio.engine_opened = self.on_engine_open
        self._sio.engine_closed = self.on_engine_close
        self._sio.on("connect", self.on_connect)
        self._sio.on("disconnect", self.on_disconnect)
        self._sio.on("auth", self.on_auth)
        self._sio.on("msg", self.on_msg)
        self._sio.on("online", self.on_online)
        self._sio.on("*", self.on_other)

    def stop_accepting(self) -> None:
        """Refuse new connections from now on (the node is draining)."""
        self._accepting = False

    def on_engine_open(self, eio_sid: str, environ: dict) -> dict | None:
        """An Engine.IO handshake: the session counts against the connection limits and must
        authenticate within the auth timeout from now, whether or not it ever joins Socket.IO.
        Returns None, or the error object of a refusal at the handshake (HTTP 401)."""
        address = environ.get("REMOTE_ADDR") or ""
        try:
            refusal = self._limits.admit(len(self._sio.eio.sockets), address)
        except GruError as exc:
            log.warning("handshake refused peer=%s: %s", address, exc.message)
            metrics.connection_refused(exc.code)
            return exc.as_result()
        if refusal is not None:
            self._refused[eio_sid] = refusal  # told at its Socket.IO connect, then closed
        self._pending[eio_sid] = address
        self._auth_deadlines.add(eio_sid)
        return None

    def on_engine_close(self, eio_sid: str) -> None:
        """The Engine.IO session is gone."""
        self._settle(eio_sid)
        self._refused.pop(eio_sid, None)

    def on_connect(self, sid: str, environ: dict, auth: object = None) -> bool:
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, "/")
        if not self._accepting:
            log.info("connect refused sid=%s: node is draining", sid)
            metrics.connection_refused(0)
            return False
        refusal = self._refused.pop(eio_sid, None)
        if refusal is not None:
            log.warning("connect refused sid=%s peer=%s: %s", sid, environ.get("REMOTE_ADDR"), refusal.message)
            metrics.connection_refused(refusal.code)
            self._sio.start_background_task(self._hard_close, eio_sid)
            raise socketio.exceptions.ConnectionRefusedError(refusal.message, refusal.as_result())
        self._buckets[sid] = TokenBucket(self._rate, self._burst)
        metrics.connection_opened()
        log.info("connect sid=%s peer=%s transport=%s", sid, environ.get("REMOTE_ADDR"),
                 _transport(environ))
        return True

    def on_disconnect(self, sid: str, reason: object = None) -> None:
        self._buckets.pop(sid, None)
        session = self._sessions.end(sid)
        metrics.connection_closed(authenticated=session is not None)
        who = f" user={session.identity.user_id} group={session.group}" if session else ""
        log.info("disconnect sid=%s reason=%s%s", sid, reason, who)

    def on_auth(self, sid: str, *args: object) -> None:
        wait_subscribed = getattr(self._sio.manager, "wait_first_subscription", None)
        if wait_subscribed is not None:  # a node just started: its users must be reachable once told "ok"
            wait_subscribed(FIRST_SUBSCRIPTION_WAIT)
        try:
            payload = decode_object(first_arg(args), "auth")
            session, role = self._sessions.authenticate(sid, payload)
        except GruError as exc:
            log.info("auth refused sid=%s code=%s reason=%s", sid, int(exc.code), exc.message)
            metrics.auth_failed(exc.code)
            self._reply(sid, "auth_result", exc.as_result())
            self._refuse(sid)
            return
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, "/")
        self._settle(eio_sid)
        missed, data = [], {"userType": role}
        self._sio.hold(eio_sid)  # live traffic waits until what was missed has been sent
        try:
            self._sio.enter_room(sid, group_room(session.group))
            self._sio.enter_room(sid, user_room(session.user))
            missed, data = self._missed(session, Sessions.recovery_point(payload), role)
        finally:
            first = [("auth_result", {**OK_RESULT, "data": data})] + [("msg", m) for m in missed]
            self._sio.release(eio_sid, first, {m["id"] for m in missed})
        metrics.auth_succeeded()
        log.info("auth ok sid=%s user=%s type=%s group=%s missed=%d", sid, session.identity.user_id,
                 session.identity.user_type, session.group, len(missed))

    def _missed(self, session: Session, last_id: int | None, role: str) -> tuple[list[dict], dict]:
        """Messages to replay before live traffic, and the ``auth_result`` data that goes with them."""
        data: dict = {"userType": role}
        missed, complete = self._history.missed(session, last_id)
        if complete is not None:
            data["recovered"] = complete
            metrics.history_recovered(len(missed), complete)
        if last_id is not None or missed:
            data["missed"] = len(missed)
        return missed, data

    def on_msg(self, sid: str, *args: object) -> None:
        def send(session: Session) -> dict:
            message = self._messaging.send(session, decode_object(first_arg(args), "msg"))
            data = {"id": message.id, "createTime": message.create_time}
            if message.queued:
                data |= {"queued": True, "expireTime": message.expire_time}
                metrics.offline_queued()
            return {**OK_RESULT, "data": data}

        self._answer(sid, "msg_result", send)

    def on_online(self, sid: str, *args: object) -> None:
        def online(session: Session) -> list:
            return self._presence.online(session, decode_group(first_arg(args)))

        self._answer(sid, "online_result", online)

    def on_other(self, event: str, sid: str, *args: object) -> None:
        """Unknown events are answered with ``error`` rather than silently dropped."""
        if not self._allowed(sid):
            self._reply(sid, "error", GruError(Code.RATE_LIMITED).as_result())
            return
        error = GruError(Code.BAD_FIELD, f"unknown event {event[:64]!r}: use auth, msg or online")
        self._reply(sid, "error", error.as_result())

    def _answer(self, sid: str, result_event: str, action: Callable[[Session], object]) -> None:
        """Run ``action`` for an authenticated session and emit its result or its error."""
        try:
            if not self._allowed(sid):
                raise GruError(Code.RATE_LIMITED)
            result = action(self._sessions.get(sid))
        except GruError as exc:
            result = exc.as_result()
            metrics.event_error(result_event, exc.code)
        except Exception:
            log.exception("%s failed for sid=%s", result_event, sid)
            result = GruError(Code.SERVER_ERROR).as_result()
            metrics.event_error(result_event, Code.SERVER_ERROR)
        self._reply(sid, result_event, result)

    def _allowed(self, sid: str) -> bool:
        """Whether this connection is within its event rate (``GRU_RATE_LIMIT``, ``GRU_RATE_BURST``)."""
        bucket = self._buckets.get(sid)
        return bucket is None or bucket.take()

    def _settle(self, eio_sid: str) -> None:
        """The session is no longer an unauthenticated one."""
        address = self._pending.pop(eio_sid, None)
        if address is not None:
            self._limits.settled(address)

    def _reply(self, sid: str, event: str, data: object) -> None:
        """Answer the caller directly: replies never need the cross-node message queue."""
        self._sio.reply(sid, event, data)

    def _expire_unauthenticated(self, eio_sid: str) -> None:
        if eio_sid not in self._pending:
            return
        metrics.auth_failed(Code.AUTH_TIMEOUT)
        sid = self._sio.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None and self._sio.manager.is_connected(sid, "/"):
            log.info("auth timeout sid=%s after %.1fs", sid, self._auth_timeout)
            self._reply(sid, "auth_result", GruError(Code.AUTH_TIMEOUT).as_result())
            self._refuse(sid)
            return
        log.info("auth timeout eio=%s peer=%s after %.1fs: the session never joined Socket.IO, closing",
                 eio_sid, self._pending[eio_sid], self._auth_timeout)
        self._settle(eio_sid)
        self._close_engine(eio_sid, abort=False)

    def _refuse(self, sid: str) -> None:
        """Disconnect after the answer; close the transport too if the client ignores us."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, "/")
        self._sio.disconnect(sid)
        if eio_sid is not None:
            self._sio.start_background_task(self._hard_close, eio_sid)

    def _hard_close(self, eio_sid: str) -> None:
        self._sio.sleep(HARD_CLOSE_DELAY)
        self._close_engine(eio_sid, abort=True)  # the client ignored the disconnect

    def _close_engine(self, eio_sid: str, abort: bool) -> None:
        """Close an Engine.IO session without waiting on its queue (a client may never poll it)."""
        socket = self._sio.eio.sockets.pop(eio_sid, None)
        if socket is not None:
            socket.close(wait=False, abort=abort)


def _transport(environ: dict) -> str:
    query = environ.get("QUERY_STRING", "")
    return "websocket" if "transport=websocket" in query else "polling"
