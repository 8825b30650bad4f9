"""The speed-ups of the socket layer keep the wire as it was: JSON text, frames, rooms."""

from __future__ import annotations

import itertools
import json

import pytest
import socketio
from engineio import packet as eio_packet
from hypothesis import given
from hypothesis import strategies as st

from gru.sockets import fastjson, frames
from gru.sockets.room_index import IndexedRoomsManager

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_dumps_is_ascii_and_round_trips_like_the_standard_library(value):
    text = fastjson.dumps(value, separators=(",", ":"))
    assert text.isascii()  # Engine.IO 3 clients get the same shared text
    assert json.loads(text) == json.loads(json.dumps(value, separators=(",", ":")))
    assert fastjson.loads(text) == json.loads(text)


@pytest.mark.parametrize("value", [{1: "int key"}, 2**70, ["\ud800 lone surrogate"]])
def test_what_orjson_refuses_falls_back_to_the_standard_library(value):
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"))


def test_non_finite_numbers_become_null_which_clients_can_parse():
    assert fastjson.dumps([float("inf"), float("nan")]) == "[null,null]"  # json.dumps: invalid JSON


@pytest.mark.parametrize("text", ["-9223372036854775809", "18446744073709551616", '{"id": 123456789012345678901234}',
                                  b'[99999999999999999999]'])
def test_integers_beyond_64_bits_are_read_exactly_not_rounded(text):
    assert fastjson.loads(text) == json.loads(text)  # a user id of 24 digits stays that id


def test_loads_accepts_what_the_standard_library_accepts():
    assert fastjson.loads('{"a": 1, "b": [NaN]}')["a"] == 1
    with pytest.raises(ValueError):
        fastjson.loads("{bad")


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_frame_headers_follow_rfc6455_lengths(length):
    frame = frames.text_bytes_frame(b"x" * length)
    assert frame[0] == 0x81
    if length < 126:
        assert frame[1] == length and len(frame) == 2 + length
    elif length <= 0xFFFF:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == length
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == length


def test_a_text_frame_is_built_once_per_shared_packet():
    pkt = eio_packet.Packet(eio_packet.MESSAGE, data='2["msg",{"id":1}]')
    first = frames.text_frame(pkt)
    assert first == bytes((0x81, 18)) + b'42["msg",{"id":1}]'
    assert frames.text_frame(pkt) is first


class _Engine:
    """Stands in for the engine the manager asks for ids."""

    def __init__(self) -> None:
        self.ids = itertools.count()

    def generate_id(self) -> str:
        return f"sid-{next(self.ids)}"


def _manager() -> IndexedRoomsManager:
    manager = IndexedRoomsManager()
    manager.set_server(type("S", (), {"packet_class": socketio.packet.Packet, "eio": _Engine()})())
    return manager


def test_disconnect_leaves_exactly_the_rooms_of_that_connection():
    manager = _manager()
    sids = [manager.connect(f"e{i}", "/") for i in range(3)]
    for sid in sids:
        manager.enter_room(sid, "/", "g:1")
    manager.enter_room(sids[0], "/", "u:1:a")
    assert sorted(manager.get_rooms(sids[0], "/")) == sorted([sids[0], "g:1", "u:1:a"])
    manager.disconnect(sids[0], "/")
    assert manager.get_rooms(sids[0], "/") == []
    assert "u:1:a" not in manager.rooms["/"] and sids[0] not in manager.rooms["/"]
    assert sorted(manager.rooms["/"]["g:1"]) == sorted(sids[1:])
    assert not manager.is_connected(sids[0], "/") and manager.is_connected(sids[1], "/")
    for sid in sids[1:]:
        manager.disconnect(sid, "/")
    assert manager.rooms == {} and manager._rooms_of == {}
