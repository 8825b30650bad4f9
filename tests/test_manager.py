"""The Redis manager's share of relaying: which rooms stay local, and the relays' format."""

from __future__ import annotations

import json

from gru.models import UserKey
from gru.sockets.manager import group_envelope, is_relayed_room, relay_envelope
from gru.sockets.rooms import group_room, user_room


def test_user_and_group_rooms_are_relayed_by_the_backend_and_connection_rooms_are_not():
    assert is_relayed_room(user_room(UserKey("7", 1)))
    assert is_relayed_room(group_room("u:1:7"))
    assert not is_relayed_room(None) and not is_relayed_room("sid-123")


def test_a_broadcast_relay_is_an_emit_to_the_group_room_skipping_the_sender():
    head, tail = group_envelope("node_1:42:ab")("10班", "sid-9")
    message = json.loads(head + b'{"id":5,"content":"page 3"}' + tail)
    assert message == {"method": "emit", "event": "msg", "namespace": "/", "room": "g:10班", "skip_sid": "sid-9",
                       "callback": None, "binary": False, "host_id": "node_1:42:ab",
                       "data": [{"id": 5, "content": "page 3"}]}


def test_a_relay_is_an_emit_message_to_the_users_room():
    head, tail = relay_envelope(UserKey('a"b', 1))
    message = json.loads(head + b'{"id":1,"content":"hi"}' + tail)
    assert message == {"method": "emit", "event": "msg", "namespace": "/", "room": 'u:1:a"b', "skip_sid": None,
                       "callback": None, "binary": False, "host_id": None, "data": [{"id": 1, "content": "hi"}]}
