"""Engine.IO 3 codec: the spec's vectors, transcripts of Node socket.io 2.5.0, and bad input."""

from __future__ import annotations

import pytest
from engineio import packet as eio_packet
from hypothesis import given
from hypothesis import strategies as st

from gru.sockets.legacy import eio3_codec as codec


def msg(data):
    return eio_packet.Packet(eio_packet.MESSAGE, data=data)


def test_text_payload_vectors():
    assert codec.encode_text_payload([msg("hello"), msg("world")]) == "6:4hello6:4world"
    assert codec.encode_text_payload([msg(b"\x01\x02\x03\x04")]) == "10:b4AQIDBA=="
    assert codec.encode_text_payload([eio_packet.Packet(eio_packet.NOOP)]) == "1:6"


def test_lengths_are_javascript_lengths():
    assert codec.encode_text_payload([msg('2["echo-back","€😀"]')]) == '21:42["echo-back","€😀"]'
    packets = codec.decode_payload('21:42["echo-back","€😀"]2:40'.encode())
    assert [p.data for p in packets] == ['2["echo-back","€😀"]', "0"]


def test_xhr2_vector_of_the_v3_suite():
    body = bytes([0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4])
    assert codec.encode_binary_payload([msg("hello"), msg(b"\x01\x02\x03\x04")]) == body
    packets = codec.decode_payload(body)
    assert [(p.packet_type, p.data) for p in packets] == [(4, "hello"), (4, b"\x01\x02\x03\x04")]


def test_xhr2_string_lengths_count_utf8_bytes():
    body = codec.encode_binary_payload([msg("张")])
    assert body == b"\x00\x04\xff4" + "张".encode()


def test_jsonp_wrap_and_unwrap():
    assert codec.jsonp_wrap(3, '6:4"a"\u2028') == '___eio[3]("6:4\\"a\\"\\u2028");'
    assert codec.jsonp_unwrap("d=" + "7%3A4a%5Cnb%5C%5Cn") == "7:4a\nb\\n"
    packets = codec.decode_payload(b"d=6%3A4hello")
    assert packets[0].data == "hello"


def test_double_utf8_detection():
    doubled = codec.double_utf8("张三")
    assert codec.undo_double_utf8(doubled) == "张三"
    assert codec.undo_double_utf8("张三") is None  # already decoded (socket.io 2.x)
    assert codec.undo_double_utf8("plain") is None
    assert codec.undo_double_utf8("é") is None  # not valid UTF-8 bytes


@pytest.mark.parametrize("body", [
    b"", b"abc", b"4:4ab", b"0:", b"99:4hello", b":4hello", b"12345678901234:4", b"1:x", b"3:b4!",
    b"6:b4AQ=", b"2:b3", b"\x00\xff4", b"\x00\x06", b"\x01\x01\xff\x05", b"\x02\x01\xff4",
    b"\x00" + b"\x09" * 40 + b"\xff", b"\x00\x03\xff4\xff\xfe", b"\x00\x0a\xff4", b"d=", b"\xff\xfe",
    "1:4😀".encode(),
])
def test_malformed_payloads_raise_payload_error_only(body):
    with pytest.raises(codec.PayloadError):
        codec.decode_payload(body)


@given(st.lists(st.one_of(st.text(max_size=30).map(msg), st.binary(max_size=30).map(msg)), min_size=1, max_size=8))
def test_round_trips(packets):
    for body in (codec.encode_text_payload(packets).encode(), codec.encode_binary_payload(packets)):
        decoded = codec.decode_payload(body)
        assert [p.data or "" for p in decoded] == [p.data or "" for p in packets]


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_else(body):
    try:
        codec.decode_payload(body)
    except codec.PayloadError:
        pass
