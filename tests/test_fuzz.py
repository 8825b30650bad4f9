"""Property-based fuzzing of the socket events and of ``/ticket`` against the real service.

Every example talks to a real gunicorn process (one per module, embedded default) with the
python-socketio client. The properties are the contract of docs/api.md, for *any* input:

* every ``auth`` / ``msg`` / ``online`` / unknown event is answered on its result event
  (``auth_result`` / ``msg_result`` / ``online_result`` / ``error``) with an ``errorCode`` from the
  error table (``gru.errors.Code``), never ``-99``; ``online_result`` is a list or an error object;
  ``auth`` is answered by itself, not by the auth timeout (``-9``);
* nothing a client sends makes the server log a traceback (checked after every example, so the
  failing input is known, and for the whole log at the end);
* a bystander in the fuzzer's group keeps receiving a well-behaved teacher's broadcasts, and gets
  every message the server accepted for it (broadcasts, unicasts to it), once and intact;
* ``/ticket`` answers any query string and any method with the JSON envelope, ``errorCode`` equal
  to the HTTP status and one of 200 (``errorCode`` 0), 400, 401, 405, 503; never 500.

Each family of inputs has its own property (auth, events after auth, unicast targets, unknown
event names, integers of any size, ticket query, ticket method), and distinct server defects raise
distinct exception classes, so one defect cannot hide another: hypothesis reports each.

Runs are reproducible (``derandomize=True``, no example database). A failure prints the smallest
input hypothesis found within the shrink budget, e.g. ``events=[('auth', ({'type': '²', ...},))]``.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import sys
import time
import urllib.parse
import uuid

import pytest
from clients import PythonClient
from conftest import AUTH_TIMEOUT, SECRET, get_ticket, start_gru
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gru.errors import Code
from gru.services.tokens import TokenService

CODES = {int(code) for code in Code}
SERVER_ERROR = int(Code.SERVER_ERROR)
RATE_LIMITED = int(Code.RATE_LIMITED)
RESULT_EVENT = {"auth": "auth_result", "msg": "msg_result", "online": "online_result"}
MAX_CONTENT = 65536  # GRU_MAX_CONTENT default
ANSWER_TIMEOUT = 1.5  # s; a healthy server answers in milliseconds; below AUTH_TIMEOUT (2 s in conftest)
TICKET_STATUSES = {200, 400, 401, 405, 503}
SHRINK_SECONDS = 10  # shrinking budget of one failing property (hypothesis' default is 5 minutes)
MAX_SAFE_DIGITS = 99  # python-engineio refuses integers of more than 100 characters: see the dedicated property

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)

# --------------------------------------------------------------------------- tokens and identities

FUZZ_USER = "777"  # the identity of every fuzzed auth: VALID_TOKEN is its token2
_tokens = TokenService(SECRET, ttl=86400)
VALID_TOKEN, _ = _tokens.issue(FUZZ_USER, 1, "fuzzer")
OTHER_USER_TOKEN, _ = _tokens.issue("778", 1, "other")
TEACHER_TOKEN, _ = _tokens.issue(FUZZ_USER, 0, "fuzzer")
EXPIRED_TOKEN, _ = TokenService(SECRET, ttl=10, clock=lambda: time.time() - 3600).issue(FUZZ_USER, 1, "old")
FOREIGN_TOKEN, _ = TokenService("another-secret-0123456789abcdef-xyz", ttl=86400).issue(FUZZ_USER, 1, "x")

_serial = itertools.count(1)

# --------------------------------------------------------------------------- strategies

# Strings that parsers of ids, numbers and JSON tend to get wrong.
TRICKY_TEXT = st.sampled_from([
    "", " ", "NaN", "Infinity", "null", "true", "false", "{}", "[]", '"1"', "'1'", "\x00", "\t", "\n", "\x7f",
    "\u200b", "\u202e", "\ufeff", "\ud800", "\udfff", "😀", "跳转", "张三", "g:", "u:1:1", "*", "/", "%00",
    "a" * 128, "a" * 129, "9" * 16, "9" * 17, "9" * 400,
])
# Spellings of small numbers: some pass str.isdigit() but not int(), or the other way round.
NUMBERISH = st.sampled_from(["1", "0", "-1", "-0", "+1", "--1", "1-", " 1", "1 ", "1.0", "1e0", "0x1", "01", "1_0",
                             "²", "¹", "١", "１", "Ⅰ", "1\x00"])
# The ones of them that str.isdigit() accepts and int() refuses, on their own so they come up often.
DIGIT_TRAPS = st.sampled_from(["²", "--1", "-²", "１", "١"])
SHORT_TEXT = st.one_of(st.text(max_size=20), TRICKY_TEXT, NUMBERISH)
_BIG = 10**MAX_SAFE_DIGITS - 1
INTS = st.one_of(st.integers(-3, 3), st.integers(-_BIG, _BIG),
                 st.sampled_from([2**53 - 1, 2**53, 2**63, -(2**63), _BIG, -_BIG]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), SHORT_TEXT)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(SHORT_TEXT, children, max_size=4)),
    max_leaves=10,
)
DEEP = st.integers(50, 400).map(lambda depth: json.loads("[" * depth + "]" * depth))


@st.composite
def big_text(draw):
    """Strings around the content limit, in characters of 1, 3 and 4 UTF-8 bytes."""
    char = draw(st.sampled_from(["x", "跳", "😀"]))
    return char * (MAX_CONTENT // len(char.encode()) + draw(st.integers(-2, 2)))


def malformed(text: str, cut: int, junk: str) -> str:
    """A JSON text broken somewhere: truncated, with junk appended."""
    return text[:cut % (len(text) + 1)] + junk


MALFORMED_JSON = st.one_of(
    st.sampled_from(["{", "}", "[", '{"type": 1,', "{'type': 1}", '{"a":1}}', "{a: 1}", '"', "\\", '{"\\u12"}',
                     '{"type":1,"content":"x"', "nul", "tru", "[1,]", '{"a" 1}', "\x00{}", "{}\x00", "{}{}"]),
    st.builds(malformed, JSONISH.map(json.dumps), st.integers(0, 200), st.sampled_from(["", "{", ",", "]", "\\", '"'])),
)


def wire_forms(payload: st.SearchStrategy) -> st.SearchStrategy:
    """How a client may put a payload on the wire: object, JSON string (the original), bytes, broken JSON."""
    return st.one_of(
        payload,
        payload.map(lambda value: json.dumps(value, ensure_ascii=False)),
        payload.map(lambda value: json.dumps(value).encode()),
        MALFORMED_JSON,
        JSONISH,
    )


def with_arity(payload: st.SearchStrategy) -> st.SearchStrategy:
    """An event's argument tuple: usually one argument, sometimes none, sometimes an extra one."""
    return st.one_of(payload.map(lambda value: (value,)), st.just(()), st.tuples(payload, JSONISH))


ID_VALUES = st.one_of(st.sampled_from([FUZZ_USER, int(FUZZ_USER), "778", 778, "bystander", "speaker"]),
                      NUMBERISH, SCALARS)
TYPE_VALUES = st.one_of(st.sampled_from([0, 1, 1.0, True, False, 2, -1, None]), DIGIT_TRAPS, NUMBERISH, SCALARS)
TOKEN_VALUES = st.one_of(
    st.sampled_from([VALID_TOKEN, VALID_TOKEN, OTHER_USER_TOKEN, TEACHER_TOKEN, EXPIRED_TOKEN, FOREIGN_TOKEN,
                     VALID_TOKEN[:-3], VALID_TOKEN + "x", VALID_TOKEN.replace(".", "", 1), "a.b.c",
                     "eyJhbGciOiJub25lIn0.eyJzdWIiOiI3NzcifQ.", VALID_TOKEN * 40]),
    SCALARS,
)
FIELD_VALUES = st.one_of(DIGIT_TRAPS, NUMBERISH, SCALARS, JSONISH)


def group_values(group: str) -> st.SearchStrategy:
    return st.one_of(st.sampled_from([group, group, "10", 10, group + "-other"]), SCALARS, JSONISH)


def valid_auth(group: str) -> dict:
    return {"id": FUZZ_USER, "type": 1, "groupId": group, "token2": VALID_TOKEN, "token1": "t", "name": "n"}


def auth_payloads(group: str) -> st.SearchStrategy:
    fields = st.fixed_dictionaries(
        {},
        optional={"id": ID_VALUES, "type": TYPE_VALUES, "groupId": group_values(group), "token2": TOKEN_VALUES,
                  "token1": JSONISH, "name": JSONISH, "lastMsgId": st.one_of(INTS, DIGIT_TRAPS, NUMBERISH, SCALARS)},
    )
    mutated = st.builds(lambda extra: {**valid_auth(group), **extra}, fields)
    return with_arity(wire_forms(st.one_of(fields, mutated, st.just(valid_auth(group)))))


CONTENTS = st.one_of(st.text(max_size=60), TRICKY_TEXT, big_text(), JSONISH)
TARGETS = st.one_of(st.fixed_dictionaries({"id": ID_VALUES, "type": TYPE_VALUES}),
                    st.fixed_dictionaries({}, optional={"id": ID_VALUES, "type": TYPE_VALUES}), JSONISH)


def msg_payloads() -> st.SearchStrategy:
    fields = st.fixed_dictionaries(
        {}, optional={"type": TYPE_VALUES, "content": CONTENTS, "target": TARGETS, "expire": st.one_of(INTS, SCALARS)},
    )
    broadcast = st.fixed_dictionaries({"type": st.just(1), "content": CONTENTS})
    unicast = st.fixed_dictionaries({"type": st.just(0), "content": CONTENTS, "target": TARGETS})
    deep = DEEP.map(lambda nested: {"type": 1, "content": nested})
    return with_arity(wire_forms(st.one_of(fields, broadcast, unicast, deep)))


def online_payloads(group: str) -> st.SearchStrategy:
    return with_arity(wire_forms(st.one_of(group_values(group), group_values(group).map(lambda g: {"groupId": g}))))


UNKNOWN_EVENTS = st.one_of(
    st.sampled_from(["connect", "disconnect", "connect_error", "*", "message", "error", "auth_result",
                     "msg_result", "online_result", "Auth", "MSG", "msg ", " online", "__proto__", "constructor",
                     "newListener", "ping", "x" * 300, "跳转", "\x00", "g:x"]),
    st.text(max_size=30),
).filter(lambda name: name not in RESULT_EVENT)


def event_batches(group: str) -> st.SearchStrategy:
    """1-5 ``msg``/``online`` events, perhaps followed by an ``auth`` (last: a refused one ends the connection)."""
    one = st.one_of(st.tuples(st.just("msg"), msg_payloads()), st.tuples(st.just("online"), online_payloads(group)))
    return st.builds(lambda events, auth: events + ([("auth", auth)] if auth else []),
                     st.lists(one, min_size=1, max_size=5), st.one_of(st.none(), auth_payloads(group)))


# --------------------------------------------------------------------------- failures, one class per defect


class NoAnswer(AssertionError):
    """An event got no answer on its result event."""


class ServerTraceback(AssertionError):
    """The server logged a traceback."""


_no_answer_kinds: dict[str, type[NoAnswer]] = {}
_traceback_kinds: dict[str, type[ServerTraceback]] = {}


def no_answer(event: str) -> type[NoAnswer]:
    """One exception class per unanswered event name (see server_traceback)."""
    if event not in _no_answer_kinds:
        _no_answer_kinds[event] = type("NoAnswer", (NoAnswer,), {"event": event})
    return _no_answer_kinds[event]


def server_traceback(excerpt: str) -> type[ServerTraceback]:
    """One exception class per server exception type and place: hypothesis tells failures apart by
    exception class and location, so it then reports each defect instead of the first one found."""
    lines = excerpt.splitlines()
    frames = [line.strip() for line in lines if line.startswith("  File ")]
    error = next((line for line in lines[1:] if line and not line[0].isspace()), "unknown")
    key = f"{error.split(':')[0]} at {frames[-1] if frames else '?'}"
    if key not in _traceback_kinds:
        _traceback_kinds[key] = type("ServerTraceback", (ServerTraceback,), {"kind": key})
    return _traceback_kinds[key]


# --------------------------------------------------------------------------- the service, its log, a room


class Watched:
    """The module's server and the part of its log each example produced."""

    def __init__(self) -> None:
        self.server = start_gru()
        self._offset = 0

    def new_log(self) -> str:
        """Log text written since the last call."""
        try:
            with open(self.server.log_path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except OSError:
            return ""
        self._offset += len(data)
        return data.decode("utf-8", "replace")

    def begin(self) -> None:
        """A new example: what earlier examples logged is theirs (the last test reads the whole log)."""
        self.new_log()

    def assert_clean_log(self, context: str) -> None:
        text = self.new_log()
        if "Traceback" in text:
            excerpt = text[text.index("Traceback"):][:4000]
            raise server_traceback(excerpt)(f"the server logged a traceback after {context}:\n{excerpt}")


@pytest.fixture(scope="module", autouse=True)
def bounded_shrinking():
    """Shrinking re-runs failing examples against the server, and an unanswered event costs
    ANSWER_TIMEOUT each time: cap hypothesis' shrinking time (an internal knob, if it exists)."""
    from hypothesis.internal.conjecture import engine

    with pytest.MonkeyPatch.context() as patch:
        if hasattr(engine, "MAX_SHRINKING_SECONDS"):
            patch.setattr(engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
        yield


@pytest.fixture(scope="module")
def watched():
    handle = Watched()
    yield handle
    handle.server.stop()


def connect(server) -> PythonClient:
    client = PythonClient()
    client.connect(server.url, transport="websocket")
    return client


def authed(server, user_id: str, group: str, user_type: int = 1) -> PythonClient:
    ticket = get_ticket(server, user_id, user_type, name=f"user {user_id}")
    client = connect(server)
    client.emit("auth", json.dumps({"id": user_id, "name": "n", "groupId": group, "token1": "t1",
                                    "token2": ticket["token"], "type": user_type}))
    result = client.wait_for("auth_result")
    assert result["success"] is True, result
    return client


class Room:
    """A group with a well-behaved teacher ("speaker") and a student who only listens ("bystander")."""

    def __init__(self, watched: Watched) -> None:
        self.watched = watched
        self.group = f"fz-{uuid.uuid4().hex[:8]}"
        self.bystander = authed(watched.server, "bystander", self.group)
        self.speaker = authed(watched.server, "speaker", self.group, user_type=0)

    def check(self, for_bystander: dict[int, str], context: str) -> None:
        """The bystander gets a fresh broadcast of the teacher, and each message meant for it, once, intact."""
        tag = f"check-{next(_serial)}"
        for _ in range(30):  # the teacher's own event rate (GRU_RATE_LIMIT) may run out while shrinking
            self.speaker.emit("msg", {"type": 1, "content": tag})
            result = self.speaker.wait_for("msg_result", timeout=5)
            if result.get("errorCode") != RATE_LIMITED:
                break
            time.sleep(0.1)
        assert result["success"] is True, f"the teacher's broadcast was refused after {context}: {result}"
        seen: dict[int, list[str]] = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                message = self.bystander.wait_for("msg", timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            seen.setdefault(message["id"], []).append(message["content"])
            if message["content"] == tag:
                break
        assert [tag] in seen.values(), f"the bystander stopped receiving after {context} (got {len(seen)} other msgs)"
        for message_id, content in for_bystander.items():
            assert seen.get(message_id) == [content], (
                f"message {message_id} accepted for the bystander arrived as {seen.get(message_id)!r} after {context}")
        stray = self.bystander.received("error") + self.speaker.received("error")
        assert not stray, f"the bystander or the teacher received error events they did not cause: {stray}"
        assert self.bystander.connected and self.speaker.connected, f"a well-behaved client was dropped after {context}"
        self.watched.assert_clean_log(context)

    def close(self) -> None:
        self.bystander.close()
        self.speaker.close()


@pytest.fixture
def room(watched):
    made = Room(watched)
    yield made
    made.close()


# --------------------------------------------------------------------------- oracles


def answer_of(client: PythonClient, result_event: str, watched: Watched, what: str) -> object:
    """The answer to one event; fail (fast, with the server's traceback if it logged one) if none comes."""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return client.wait_for(result_event, timeout=0.05)
        except TimeoutError:
            watched.assert_clean_log(what)
    watched.assert_clean_log(what)
    event = what.split(" with ")[0]
    raise no_answer(event)(f"no {result_event} within {ANSWER_TIMEOUT}s for {what}; connected={client.connected}")


def assert_result_shape(answer: object, what: str, allow_list: bool = False) -> None:
    if allow_list and isinstance(answer, list):
        return
    assert isinstance(answer, dict), f"{what}: the answer is not an object: {answer!r}"
    code = answer.get("errorCode")
    assert code != SERVER_ERROR, f"{what}: internal server error: {answer!r}"
    assert code in CODES, f"{what}: errorCode {code!r} is not in the error table: {answer!r}"
    assert isinstance(answer.get("success"), bool) and answer["success"] == (code == 0), f"{what}: {answer!r}"
    assert isinstance(answer.get("msg"), str), f"{what}: {answer!r}"


def decoded(args: tuple) -> dict | None:
    """The payload object the server sees, as far as a test can tell (``None`` if it is no JSON object)."""
    if not args:
        return None
    value = args[0]
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def is_int(value: object, *allowed: int) -> bool:
    return type(value) is int and value in allowed


def check_msg_answer(payload: dict | None, answer: dict, what: str) -> None:
    """The content rules of docs/api.md, for broadcasts with a well-formed type."""
    if payload is None or not is_int(payload.get("type"), 1) or answer["errorCode"] == RATE_LIMITED:
        return
    content = payload.get("content")
    if not isinstance(content, str):
        assert answer["errorCode"] == int(Code.BAD_CONTENT), f"{what}: {answer}"
    elif len(content.encode("utf-8", "surrogatepass")) > MAX_CONTENT:
        assert answer["errorCode"] == int(Code.CONTENT_TOO_LARGE), f"{what}: {answer}"
    else:
        assert answer["success"] is True, f"{what}: a valid broadcast was refused: {answer}"
        assert isinstance(answer["data"]["id"], int) and 0 < answer["data"]["id"] <= 2**53 - 1, answer


def for_the_bystander(payload: dict | None) -> bool:
    """Whether an accepted message must reach the bystander: a broadcast, or a unicast to it."""
    if payload is None:
        return False
    if is_int(payload.get("type"), 1):
        return True
    target = payload.get("target")
    return is_int(payload.get("type"), 0) and isinstance(target, dict) and target.get("id") == "bystander" \
        and target.get("type") in (1, "1") and type(target.get("type")) is not bool


def play(client: PythonClient, events: list[tuple[str, tuple]], watched: Watched, authenticated: bool) -> dict:
    """Emit the events one by one and check each answer; return the accepted messages meant for the bystander."""
    for_bystander: dict[int, str] = {}
    for index, (event, args) in enumerate(events):
        what = f"event #{index} {event!r} with args {args!r:.400}"
        client.emit(event, *args)
        answer = answer_of(client, RESULT_EVENT.get(event, "error"), watched, what)
        watched.assert_clean_log(what)  # the server's own account of a failure is the most telling
        assert_result_shape(answer, what, allow_list=(event == "online"))
        if event in ("msg", "online") and not authenticated:
            assert answer["errorCode"] in (int(Code.NOT_AUTHENTICATED), RATE_LIMITED), f"{what}: {answer}"
        if event == "online" and isinstance(answer, list):
            assert "bystander" in answer, f"{what}: the own group listed without the bystander: {answer}"
        if event == "msg" and authenticated:
            payload = decoded(args)
            check_msg_answer(payload, answer, what)
            if answer["success"] and for_the_bystander(payload):
                for_bystander[answer["data"]["id"]] = payload["content"]
        if event not in RESULT_EVENT:
            assert client.connected, f"{what}: an unknown event closed the connection"
        if event == "auth":
            if answer["success"]:
                authenticated = True
            else:
                assert answer["errorCode"] != int(Code.AUTH_TIMEOUT), f"{what}: auth was never answered itself"
                client.wait_disconnected(timeout=AUTH_TIMEOUT + 3)  # refused: disconnected, by design
                break
    return for_bystander


def run_unauthenticated(watched: Watched, room: Room, events: list) -> None:
    watched.begin()
    client = connect(watched.server)
    try:
        play(client, events, watched, authenticated=False)
    finally:
        client.close()
    room.check({}, f"events {events!r:.400}")


def run_authenticated(watched: Watched, room: Room, events: list) -> None:
    watched.begin()
    client = authed(watched.server, FUZZ_USER, room.group)
    try:
        for_bystander = play(client, events, watched, authenticated=True)
    finally:
        client.close()
    room.check(for_bystander, f"events {events!r:.400}")


# --------------------------------------------------------------------------- socket properties


@FUZZ
@given(data=st.data())
def test_auth_is_always_answered_with_a_known_code(watched, room, data):
    events = data.draw(st.one_of(
        st.tuples(st.just("auth"), auth_payloads(room.group)).map(lambda event: [event]),
        event_batches(room.group),  # msg/online before auth (answered -8), then perhaps auth
    ), label="events")
    run_unauthenticated(watched, room, events)


@FUZZ
@example(field="type", value="²", as_json=True)  # explicit examples: inputs of defects found before
@example(field="type", value="--1", as_json=False)
@example(field="lastMsgId", value="²", as_json=True)
@given(field=st.sampled_from(["id", "type", "groupId", "token2", "lastMsgId", "name", "token1"]),
       value=FIELD_VALUES, as_json=st.booleans())
def test_auth_with_any_value_in_one_field_is_answered(watched, room, field, value, as_json):
    payload = {**valid_auth(room.group), field: value}
    run_unauthenticated(watched, room, [("auth", (json.dumps(payload) if as_json else payload,))])


@FUZZ
@given(data=st.data())
def test_events_after_auth_are_answered_and_bystanders_keep_receiving(watched, room, data):
    run_authenticated(watched, room, data.draw(event_batches(room.group), label="events"))


@FUZZ
@example(target={"id": "bystander", "type": "²"}, content="x", expire=None, as_json=False)
@example(target={"id": "bystander", "type": "1"}, content="x", expire=None, as_json=True)
@given(target=TARGETS, content=st.text(max_size=20), expire=st.one_of(st.none(), INTS, SCALARS), as_json=st.booleans())
def test_unicast_to_any_target_is_answered(watched, room, target, content, expire, as_json):
    payload = {"type": 0, "target": target, "content": content}
    if expire is not None:
        payload["expire"] = expire
    run_authenticated(watched, room, [("msg", (json.dumps(payload) if as_json else payload,))])


@FUZZ
@example(name="*", args=({"page": 3},), before_auth=False)
@example(name="*", args=("g:elsewhere",), before_auth=True)
@example(name="disconnect", args=(), before_auth=False)
@given(name=UNKNOWN_EVENTS, args=with_arity(wire_forms(JSONISH)), before_auth=st.booleans())
def test_unknown_events_are_answered_with_error_and_keep_the_connection(watched, room, name, args, before_auth):
    watched.begin()
    client = connect(watched.server) if before_auth else authed(watched.server, FUZZ_USER, room.group)
    try:
        play(client, [(name, args)], watched, authenticated=not before_auth)
        client.emit("online", room.group)  # the connection still works
        answer = answer_of(client, "online_result", watched, f"online after {name!r}")
        assert isinstance(answer, list) != before_auth, answer
    finally:
        client.close()
    room.check({}, f"unknown event {name!r} {args!r:.200}")


HUGE_INTS = st.one_of(st.sampled_from([10**100, -(10**99), 10**400, 10**4299, 10**4300, 10**5000]),
                      st.integers(min_value=10**100, max_value=10**300))


@contextlib.contextmanager
def unlimited_int_digits():
    """Let this process write integers of more than 4300 digits (Python's default limit), as other
    clients (a Node BigInt-aware encoder, a raw socket) can; the server keeps its own limit."""
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


@st.composite
def payloads_with_a_huge_integer(draw, group: str):
    """A payload of any event with an integer of more than 100 characters somewhere in it."""
    event = draw(st.sampled_from(["auth", "msg", "online", "jump"]))
    base = {"auth": valid_auth(group), "msg": {"type": 1, "content": "x"}, "online": {"groupId": group},
            "jump": {"page": 3}}[event]
    field = draw(st.sampled_from([*base, "extra"]))
    number = draw(HUGE_INTS)
    value = draw(st.sampled_from(["bare", "in a list", "nested"]))
    placed = {"bare": number, "in a list": [number], "nested": {"n": number}}[value]
    return event, ({**base, field: placed},)


@FUZZ
@given(data=st.data())
def test_integers_of_any_size_in_a_payload_are_answered(watched, room, data):
    """Numbers beyond what a JSON decoder takes (python-engineio's: 100 characters; Python's: 4300
    digits) fail while the packet is decoded, before Gru's handlers: kept apart from the other
    properties, whose integers stay below 100 characters so as to reach Gru's own code."""
    with unlimited_int_digits():
        event, args = data.draw(payloads_with_a_huge_integer(room.group), label="event")
        if event == "auth":
            run_unauthenticated(watched, room, [(event, args)])
        else:
            run_authenticated(watched, room, [(event, args)])


def test_valid_auth_still_works_after_fuzzing(watched, room):
    """Sanity: whatever the fuzzing left behind, a user still gets in and talks."""
    client = authed(watched.server, FUZZ_USER, room.group)
    try:
        client.emit("msg", {"type": 1, "content": "still here"})
        answer = client.wait_for("msg_result")
        assert answer["success"] is True, answer
        room.check({answer["data"]["id"]: "still here"}, "the sanity broadcast")
    finally:
        client.close()


# --------------------------------------------------------------------------- /ticket properties

REQUIRED = ["userType", "userName", "userId", "token1"]
VALID_QUERY = [("userType", "1"), ("userName", "student"), ("userId", "42"), ("token1", "t1")]
PARAM_NAMES = st.one_of(st.sampled_from([*REQUIRED, "usertype", "userType[]", "", " userId", "token2", "x"]),
                        st.text(max_size=12))
PARAM_VALUES = st.one_of(
    NUMBERISH,
    TRICKY_TEXT,
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=10),  # control characters
    st.integers(100, 5000).map(lambda n: "t" * n),  # very long (token1 may have 4096 characters)
    st.integers(1, 1500).map(lambda n: "跳" * n),
)


def quoted(text: str) -> str:
    """Percent-encoded UTF-8; lone surrogates become their (invalid) 3-byte forms."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def encode_pair(name: str, value: str, style: str) -> str:
    if style == "broken-escape":
        return f"{quoted(name)}={quoted(value)}%"
    if style == "bad-utf8":
        return f"{quoted(name)}={quoted(value)}%FF%FE"
    if style == "no-equals":
        return quoted(name)
    return f"{quoted(name)}={quoted(value)}"


@st.composite
def ticket_queries(draw) -> str:
    """A query string: a valid one mutated (drop, repeat, replace, empty, add), or pairs made up from scratch."""
    if draw(st.booleans()):
        pairs = list(VALID_QUERY)
        for _ in range(draw(st.integers(1, 3))):
            action = draw(st.sampled_from(["drop", "repeat", "replace", "replace", "empty", "add"]))
            if not pairs:
                action = "add"
            index = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
            if action == "drop":
                pairs.pop(index)
            elif action == "repeat":
                pairs.insert(draw(st.integers(0, len(pairs))), (pairs[index][0], draw(PARAM_VALUES)))
            elif action == "replace":
                pairs[index] = (pairs[index][0], draw(PARAM_VALUES))
            elif action == "empty":
                pairs[index] = (pairs[index][0], "")
            else:
                pairs.append((draw(PARAM_NAMES), draw(PARAM_VALUES)))
    else:
        pairs = draw(st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=6))
    styles = st.sampled_from(["plain", "plain", "plain", "broken-escape", "bad-utf8", "no-equals"])
    return "&".join(encode_pair(name, value, draw(styles)) for name, value in pairs)


def http_request(watched: Watched, method: str, path: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", watched.server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def assert_ticket_envelope(status: int, body: bytes, what: str) -> None:
    assert status != 500, f"{what}: internal error {body[:200]!r}"
    assert status in TICKET_STATUSES, f"{what}: HTTP {status} {body[:200]!r}"
    try:
        answer = json.loads(body)
    except ValueError:
        raise AssertionError(f"{what}: HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
    assert isinstance(answer, dict) and isinstance(answer.get("success"), bool), f"{what}: {answer!r}"
    assert answer["errorCode"] == (0 if status == 200 else status), f"{what}: HTTP {status} {answer!r}"
    assert answer["success"] == (status == 200) and isinstance(answer.get("msg"), str), f"{what}: {answer!r}"
    if status == 200:
        assert isinstance(answer["data"]["token"], str) and answer["data"]["addr"], f"{what}: {answer!r}"


@FUZZ
@given(query=ticket_queries())
def test_ticket_answers_any_query_with_the_json_envelope(watched, query):
    what = f"GET /ticket?{query[:300]}"
    watched.begin()
    status, _, body = http_request(watched, "GET", "/ticket?" + query)
    watched.assert_clean_log(what)
    assert_ticket_envelope(status, body, what)


@FUZZ
@example(param="userType", value="²")
@example(param="userType", value="--1")
@example(param="token1", value="跳" * 4096)  # a valid token1: 4096 printable characters
@given(param=st.sampled_from(REQUIRED), value=st.one_of(DIGIT_TRAPS, NUMBERISH, PARAM_VALUES))
def test_ticket_answers_any_value_of_one_parameter(watched, param, value):
    query = "&".join(f"{name}={quoted(value if name == param else given_value)}" for name, given_value in VALID_QUERY)
    what = f"GET /ticket?{query[:300]}"
    watched.begin()
    status, _, body = http_request(watched, "GET", "/ticket?" + query)
    watched.assert_clean_log(what)
    assert_ticket_envelope(status, body, what)


@FUZZ
@example(method="HEAD", valid=True)
@given(method=st.one_of(st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                                         "CONNECT", "PROPFIND", "QUERY", "LINK"]),
                        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)),
       valid=st.booleans())
def test_ticket_answers_any_method(watched, method, valid):
    query = urllib.parse.urlencode(VALID_QUERY if valid else VALID_QUERY[:2])
    what = f"{method} /ticket?{query}"
    watched.begin()
    status, headers, body = http_request(watched, method, "/ticket?" + query)
    watched.assert_clean_log(what)
    assert status != 500, f"{what}: {body[:200]!r}"
    if method == "OPTIONS":  # a CORS preflight (GRU_CORS_ORIGINS covers /ticket): no JSON body to speak of
        assert status in (200, 204), f"{what}: HTTP {status}"
    elif method == "HEAD":  # no body by definition; the status must agree with the Allow header
        assert status in TICKET_STATUSES, f"{what}: HTTP {status}"
        allowed = {m.strip() for m in headers.get("allow", "").split(",")}
        assert status != 405 or "HEAD" not in allowed, \
            f"{what}: refused with 405 although Allow says {headers.get('allow')!r}"
    else:
        assert_ticket_envelope(status, body, what)
        if method == "GET":
            assert status == (200 if valid else 400), f"{what}: HTTP {status}"
        else:
            assert status == 405, f"{what}: HTTP {status}"
            assert "GET" in headers.get("allow", ""), f"{what}: a 405 without Allow: GET (RFC 9110): {headers}"


def test_zz_server_survived_the_fuzzing(watched):
    """Runs last in this module: the server is still up and its whole log holds no traceback."""
    assert watched.server.proc.poll() is None, f"gunicorn exited:\n{watched.server.log_tail()}"
    text = watched.server.log_path.read_text(encoding="utf-8", errors="replace")
    count = text.count("Traceback")
    assert count == 0, f"{count} traceback(s) in the server log; the first:\n" + text[text.find("Traceback"):][:3000]
