"""Sessions, presence and messaging rules, on the memory backend with a recording delivery port."""

import pytest

from gru.backends.memory import MemoryBackend
from gru.errors import Code, GruError
from gru.models import UserKey
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
    def __init__(self, max_content=100):
        self.now = 1_800_000_000.0
        self.backend = MemoryBackend()
        self.tokens = TokenService("k" * 32, ttl=3600, clock=lambda: self.now)
        self.presence = Presence(self.backend)
        self.sessions = Sessions(self.tokens, self.presence, TYPES)
        self.delivery = RecordingDelivery()
        self.messaging = Messaging(IdAllocator(self.backend, clock=lambda: self.now), self.presence,
                                   self.delivery, TYPES, max_content)

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
])
def test_message_refusals_deliver_nothing(world, payload, code):
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
