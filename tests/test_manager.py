"""The Redis manager's share of unicast relaying: which rooms stay local, and the relay's format."""

from __future__ import annotations

import json

from gru.models import UserKey
from gru.sockets.manager import is_user_room, relay_envelope
from gru.sockets.rooms import group_room, user_room


def test_user_rooms_are_relayed_by_the_backend_and_group_rooms_are_not():
    assert is_user_room(user_room(UserKey("7", 1)))
    assert not is_user_room(group_room("u:1:7"))  # a group named like a user room is still a group
    assert not is_user_room(None) and not is_user_room("sid-123")


def test_a_relay_is_an_emit_message_to_the_users_room():
    head, tail = relay_envelope(UserKey('a"b', 1))
    message = json.loads(head + b'{"id":1,"content":"hi"}' + tail)
    assert message == {"method": "emit", "event": "msg", "namespace": "/", "room": 'u:1:a"b', "skip_sid": None,
                       "callback": None, "binary": False, "host_id": None, "data": [{"id": 1, "content": "hi"}]}
