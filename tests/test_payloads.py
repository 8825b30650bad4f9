"""Event payloads: JSON strings (the original clients) and objects (newer clients) are both accepted."""

import pytest

from gru.errors import Code, GruError
from gru.sockets.payloads import MISSING, decode_group, decode_object


def test_json_string_and_object_decode_alike():
    assert decode_object('{"type": 1, "content": "跳转"}', "msg") == {"type": 1, "content": "跳转"}
    assert decode_object({"type": 1}, "msg") == {"type": 1}
    assert decode_object(b'{"a": 1}', "msg") == {"a": 1}


@pytest.mark.parametrize(("data", "code"), [
    ("{bad", Code.BAD_JSON), ("", Code.BAD_JSON), ("[" * 100000, Code.BAD_JSON),
    ("[1, 2]", Code.BAD_FIELD), ('"text"', Code.BAD_FIELD), (42, Code.BAD_FIELD),
    (None, Code.BAD_FIELD), (MISSING, Code.BAD_FIELD), ([1], Code.BAD_FIELD),
])
def test_bad_payloads_get_a_defined_code(data, code):
    with pytest.raises(GruError) as info:
        decode_object(data, "msg")
    assert info.value.code is code
    assert info.value.message.startswith("msg:")


@pytest.mark.parametrize(("data", "group"), [
    ("10", "10"), (10, 10), ('"10"', "10"), ({"groupId": 7}, 7), ('{"groupId": "a"}', "a"), (MISSING, None),
])
def test_online_accepts_the_usual_spellings_of_a_group(data, group):
    assert decode_group(data) == group


def test_online_with_broken_json_is_an_error():
    with pytest.raises(GruError) as info:
        decode_group("{oops")
    assert info.value.code is Code.BAD_JSON
