"""Sessions, presence and messaging rules, on the memory backend with a recording delivery port."""

import pytest
import redis

from gru.backends.memory import MemoryBackend
from gru.backends.redis import Keys, RedisBackend
from gru.errors import Code, GruError
from gru.models import Instance, UserKey
from gru.services.history import History
from gru.services.ids import IdAllocator
from gru.services.messaging import Messaging
from gru.services.presence import Presence
from gru.services.sessions import Sessions
from gru.services.tokens import TokenService

TYPES = {0: "TEACHER", 1: "STUDENT"}


class RecordingDelivery:
    def __init__(self):
        self.sent = []

    def to_group(self, group, body, exclude_conn):
        self.sent.append(("group", group, exclude_conn, body))

    def to_user(self, user, body):
        self.sent.append(("user", user, None, body))


class World:
    def __init__(self, max_content=100, scope="group", backend=None):
        self.now = 1_800_000_000.0
        clock = lambda: self.now  # noqa: E731
        self.backend = backend or MemoryBackend(clock=clock)
        self.tokens = TokenService("k" * 32, ttl=3600, clock=clock)
        self.presence = Presence(self.backend, online_scope=scope)
        self.sessions = Sessions(self.tokens, self.presence, TYPES)
        self.delivery = RecordingDelivery()
        self.history = History(self.backend, size=5, ttl=60, offline_size=3, clock=clock)
        self.messaging = Messaging(self.backend, IdAllocator(self.backend, clock=clock), self.delivery,
                                   self.history, TYPES, max_content, max_expire=3600, unicast_scope=scope)

    def auth(self, conn, user_id, user_type=1, group=10, **overrides):
        token, _ = self.tokens.issue(str(user_id), user_type, f"user {user_id}")
        payload = {"id": user_id, "name": "x", "groupId": group, "token1": "t", "token2": token, "type": user_type}
        return self.sessions.authenticate(conn, payload | overrides)


@pytest.fixture
def world():
    return World()


def test_auth_returns_the_role_and_marks_the_user_online(world):
    session, role = world.auth("c1", 123, user_type=0)
    assert role == "TEACHER"
    assert world.backend.online("10") == [123]
    assert session.group == "10"


def test_numeric_and_string_group_ids_are_the_same_group(world):
    world.auth("c1", 1, group=10)
    world.auth("c2", 2, group="10")
    assert sorted(world.backend.online("10")) == [1, 2]


@pytest.mark.parametrize(("overrides", "code"), [
    ({"id": 999}, Code.IDENTITY_MISMATCH),
    ({"type": 0}, Code.IDENTITY_MISMATCH),
    ({"token2": "forged"}, Code.TOKEN_INVALID),
    ({"groupId": None}, Code.BAD_FIELD),
    ({"groupId": ""}, Code.BAD_GROUP),
    ({"groupId": [1]}, Code.BAD_GROUP),
    ({"id": True}, Code.BAD_FIELD),
    ({"type": 7}, Code.BAD_FIELD),
])
def test_auth_refusals(world, overrides, code):
    with pytest.raises(GruError) as info:
        world.auth("c1", 123, **overrides)
    assert info.value.code is code
    assert world.backend.online("10") == []


def test_token_of_another_user_is_refused(world):
    token, _ = world.tokens.issue("1", 1, "one")
    with pytest.raises(GruError) as info:
        world.sessions.authenticate("c1", {"id": 2, "type": 1, "groupId": 1, "token2": token})
    assert info.value.code is Code.IDENTITY_MISMATCH


def test_auth_twice_is_refused(world):
    world.auth("c1", 1)
    with pytest.raises(GruError) as info:
        world.auth("c1", 1)
    assert info.value.code is Code.ALREADY_AUTHENTICATED


def test_a_user_with_two_connections_stays_online_until_both_leave(world):
    world.auth("c1", 1)
    world.auth("c2", 1)
    assert world.backend.online("10") == [1]
    world.sessions.end("c1")
    assert world.backend.online("10") == [1]
    world.sessions.end("c2")
    assert world.backend.online("10") == []
    assert not world.backend.is_online(UserKey("1", 1))


def test_broadcast_goes_to_the_group_except_the_sender(world):
    sender, _ = world.auth("c1", 1)
    message = world.messaging.send(sender, {"type": 1, "content": "跳转到第三页"})
    kind, group, excluded, body = world.delivery.sent[-1]
    assert (kind, group, excluded) == ("group", "10", "c1")
    assert body == {"id": message.id, "createTime": 1_800_000_000_000, "content": "跳转到第三页", "expireTime": 0,
                    "from": {"id": 1, "type": 1, "name": "user 1"}}


def test_unicast_goes_to_the_target_user(world):
    sender, _ = world.auth("c1", 1)
    world.auth("c2", 2, user_type=0)
    world.messaging.send(sender, {"type": 0, "target": {"id": "2", "type": 0}, "content": "hi"})
    assert world.delivery.sent[-1][:2] == ("user", UserKey("2", 0))


@pytest.mark.parametrize(("payload", "code"), [
    ({"type": 2, "content": "x"}, Code.BAD_MSG_TYPE),
    ({"type": "1", "content": "x"}, Code.BAD_MSG_TYPE),
    ({"type": True, "content": "x"}, Code.BAD_MSG_TYPE),
    ({"content": "x"}, Code.BAD_MSG_TYPE),
    ({"type": 1}, Code.BAD_CONTENT),
    ({"type": 1, "content": {"a": 1}}, Code.BAD_CONTENT),
    ({"type": 1, "content": "x" * 101}, Code.CONTENT_TOO_LARGE),
    ({"type": 1, "content": "跳" * 34}, Code.CONTENT_TOO_LARGE),  # 102 bytes in UTF-8
    ({"type": 0, "content": "x"}, Code.BAD_TARGET),
    ({"type": 0, "target": {"id": 5}, "content": "x"}, Code.BAD_TARGET),
    ({"type": 0, "target": "5", "content": "x"}, Code.BAD_TARGET),
    ({"type": 0, "target": {"id": 5, "type": 9}, "content": "x"}, Code.BAD_TARGET),
    ({"type": 0, "target": {"id": 5, "type": 1}, "content": "x"}, Code.TARGET_OFFLINE),
    ({"type": 0, "target": {"id": 6, "type": 1}, "content": "x"}, Code.FORBIDDEN),
    ({"type": 0, "target": {"id": 7, "type": 1}, "content": "x"}, Code.FORBIDDEN),
    ({"type": 0, "target": {"id": 5, "type": 1}, "content": "x", "expire": -1}, Code.BAD_FIELD),
    ({"type": 0, "target": {"id": 5, "type": 1}, "content": "x", "expire": 3601}, Code.BAD_FIELD),
    ({"type": 0, "target": {"id": 5, "type": 1}, "content": "x", "expire": "60"}, Code.BAD_FIELD),
])
def test_message_refusals_deliver_nothing(world, payload, code):
    world.auth("c5", 5)
    world.sessions.end("c5")  # user 5: last seen in the sender's group, offline now
    world.auth("c6", 6, group=99)  # user 6: online in another group; user 7: never seen
    sender, _ = world.auth("c1", 1)
    with pytest.raises(GruError) as info:
        world.messaging.send(sender, payload)
    assert info.value.code is code
    assert world.delivery.sent == []


def test_content_at_the_limit_is_accepted(world):
    sender, _ = world.auth("c1", 1)
    world.messaging.send(sender, {"type": 1, "content": "x" * 100})
    assert len(world.delivery.sent) == 1


def test_delivery_failure_is_reported_not_swallowed(world):
    sender, _ = world.auth("c1", 1)

    def broken(*args, **kwargs):
        raise GruError(Code.DELIVERY_UNAVAILABLE)

    world.delivery.to_group = broken
    with pytest.raises(GruError) as info:
        world.messaging.send(sender, {"type": 1, "content": "x"})
    assert info.value.code is Code.DELIVERY_UNAVAILABLE


def test_scope_any_allows_other_groups():
    world = World(scope="any")
    sender, _ = world.auth("c1", 1)
    world.auth("c2", 2, group=99)
    world.messaging.send(sender, {"type": 0, "target": {"id": 2, "type": 1}, "content": "hi"})
    assert world.presence.online(sender, 99) == [2]


def test_online_of_another_group_is_forbidden_by_default(world):
    sender, _ = world.auth("c1", 1)
    with pytest.raises(GruError) as info:
        world.presence.online(sender, 99)
    assert info.value.code is Code.FORBIDDEN
    assert world.presence.online(sender, "10") == [1]


def test_offline_unicast_with_expire_is_queued_and_taken_once(world):
    world.auth("c2", 2)
    world.sessions.end("c2")
    sender, _ = world.auth("c1", 1)
    message = world.messaging.send(sender, {"type": 0, "target": {"id": 2, "type": 1}, "content": "later",
                                            "expire": 60})
    assert message.queued and message.expire_time == message.create_time + 60_000
    assert world.delivery.sent == []
    session, _ = world.auth("c3", 2)
    missed, complete = world.history.missed(session, None)
    assert [m["content"] for m in missed] == ["later"] and complete is None
    assert world.history.missed(session, None) == ([], None)  # once


def test_expired_queued_unicasts_are_not_delivered(world):
    world.auth("c2", 2)
    world.sessions.end("c2")
    sender, _ = world.auth("c1", 1)
    world.messaging.send(sender, {"type": 0, "target": {"id": 2, "type": 1}, "content": "old", "expire": 5})
    world.now += 6
    session, _ = world.auth("c3", 2)
    assert world.history.missed(session, None) == ([], None)


def test_recovery_returns_group_and_private_messages_after_the_last_seen_id(world):
    sender, _ = world.auth("c1", 1)
    receiver, _ = world.auth("c2", 2)
    first = world.messaging.send(sender, {"type": 1, "content": "0"})
    for i in range(1, 4):
        world.now += 0.001
        world.messaging.send(sender, {"type": 1, "content": str(i)})
    world.messaging.send(sender, {"type": 0, "target": {"id": 2, "type": 1}, "content": "private"})
    missed, complete = world.history.missed(receiver, first.id)
    assert [m["content"] for m in missed] == ["1", "2", "3", "private"] and complete is True
    ids = [m["id"] for m in missed]
    assert ids == sorted(ids)


def test_recovery_says_when_history_no_longer_reaches_back(world):
    sender, _ = world.auth("c1", 1)
    receiver, _ = world.auth("c2", 2)
    first = world.messaging.send(sender, {"type": 1, "content": "0"})
    for i in range(1, 8):  # history keeps 5 per stream
        world.messaging.send(sender, {"type": 1, "content": str(i)})
    missed, complete = world.history.missed(receiver, first.id)
    assert [m["content"] for m in missed] == ["3", "4", "5", "6", "7"] and complete is False
    world.now += 61  # older than the history's time to live
    assert world.history.missed(receiver, missed[-1]["id"]) == ([], False)


@pytest.fixture(params=["memory", "redis"])
def any_world(request):
    """A world on either backend: outcomes that come back from Redis are decoded text, not constants."""
    if request.param == "memory":
        yield World()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_server").url, socket_timeout=1)
    backend = RedisBackend(client, Keys(request.getfixturevalue("redis_prefix")), "node_1:1:a", 30)
    backend.heartbeat(Instance("node_1:1:a", "node_1", None, 0, "up"))
    yield World(backend=backend)
    backend.close()


def test_each_unicast_outcome_reaches_the_sender(any_world):
    world = any_world
    world.auth("c5", 5)
    world.sessions.end("c5")  # user 5: last seen in the sender's group
    world.auth("c6", 6, group=99)  # user 6: online in another group
    world.auth("c2", 2)
    sender, _ = world.auth("c1", 1)

    def send(user_id, **extra):
        return world.messaging.send(sender, {"type": 0, "target": {"id": user_id, "type": 1}, "content": "x"} | extra)

    sent = send(2)
    assert not sent.queued and world.delivery.sent[-1][:2] == ("user", UserKey("2", 1))
    queued = send(5, expire=60)
    assert queued.queued and queued.expire_time == queued.create_time + 60_000
    for user_id, code in ((5, Code.TARGET_OFFLINE), (6, Code.FORBIDDEN)):
        with pytest.raises(GruError) as info:
            send(user_id)
        assert info.value.code is code
    assert len(world.delivery.sent) == 1  # only the delivered one


def test_scope_any_read_from_the_environment_allows_other_groups():
    world = World(scope="".join(["an", "y"]))  # not the interned literal, as when read from a variable
    sender, _ = world.auth("c1", 1)
    world.auth("c2", 2, group=99)
    assert not world.messaging.send(sender, {"type": 0, "target": {"id": 2, "type": 1}, "content": "hi"}).queued


@pytest.mark.parametrize(("expire", "queued"), [(0, None), (None, None), (1, 1000), (3600, 3_600_000)])
def test_expire_from_one_second_to_the_maximum_queues_and_0_or_none_does_not(world, expire, queued):
    world.auth("c2", 2)
    world.sessions.end("c2")
    sender, _ = world.auth("c1", 1)
    payload = {"type": 0, "target": {"id": 2, "type": 1}, "content": "x", "expire": expire}
    if queued is None:
        with pytest.raises(GruError) as info:
            world.messaging.send(sender, payload)
        assert info.value.code is Code.TARGET_OFFLINE  # accepted as "do not wait", not refused as a bad field
    else:
        message = world.messaging.send(sender, payload)
        assert message.queued and message.expire_time - message.create_time == queued


def test_a_system_unicast_without_expire_to_an_offline_user_is_an_error(world):
    world.auth("c2", 2)
    world.sessions.end("c2")
    sender, _ = world.auth("c1", 1)
    with pytest.raises(GruError) as info:
        world.messaging.publish(sender, "x", UserKey("2", 1))
    assert info.value.code is Code.TARGET_OFFLINE


def test_expire_on_a_broadcast_is_ignored(world):
    sender, _ = world.auth("c1", 1)
    message = world.messaging.send(sender, {"type": 1, "content": "x", "expire": "never"})
    assert world.delivery.sent[-1][3]["expireTime"] == 0 and message.expire_time == 0


@pytest.mark.parametrize(("limit", "content", "fits"), [
    (100, "x" * 26, True),  # more characters than a quarter of the limit: bytes are counted
    (100, "é" * 50, True),  # 100 bytes
    (100, "😀" * 25, True),  # 100 bytes
    (100, "😀" * 26, False),  # 104 bytes in 26 characters
    (3, "😀", False),  # one character, four bytes
    (3, "é", True),
])
def test_content_is_measured_in_utf8_bytes(limit, content, fits):
    world = World(max_content=limit)
    sender, _ = world.auth("c1", 1)
    if fits:
        world.messaging.send(sender, {"type": 1, "content": content})
        assert world.delivery.sent[-1][3]["content"] == content
    else:
        with pytest.raises(GruError) as info:
            world.messaging.send(sender, {"type": 1, "content": content})
        assert info.value.code is Code.CONTENT_TOO_LARGE and world.delivery.sent == []
