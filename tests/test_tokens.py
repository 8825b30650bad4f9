"""token2: issued for one user, reusable until it expires, and unforgeable."""

import jwt
import pytest

from gru.errors import Code, GruError
from gru.services.tokens import TokenService


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_a_token_proves_the_user_it_was_issued_for_and_can_be_reused():
    clock = Clock()
    tokens = TokenService("k" * 32, ttl=60, clock=clock)
    token, identity = tokens.issue("123", 1, "张三")
    assert tokens.verify(token) == identity
    assert tokens.verify(token) == identity  # reconnects re-send the same token
    assert (identity.user_id, identity.user_type, identity.user_name) == ("123", 1, "张三")


def test_an_expired_token_is_refused():
    clock = Clock()
    tokens = TokenService("k" * 32, ttl=60, clock=clock)
    token, _ = tokens.issue("123", 1, "a")
    clock.now += 61
    with pytest.raises(GruError) as info:
        tokens.verify(token)
    assert info.value.code is Code.TOKEN_EXPIRED


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # signature altered
    lambda t: t[: len(t) // 2],  # truncated
    lambda t: "",
    lambda t: "not.a.token",
    lambda t: 12345,
    lambda t: None,
    lambda t: "x" * 5000,
])
def test_tampered_or_malformed_tokens_are_refused(mangle):
    tokens = TokenService("k" * 32, ttl=60, clock=Clock())
    token, _ = tokens.issue("123", 1, "a")
    with pytest.raises(GruError) as info:
        tokens.verify(mangle(token))
    assert info.value.code is Code.TOKEN_INVALID


def test_claims_changed_without_the_secret_are_refused():
    clock = Clock()
    tokens = TokenService("k" * 32, ttl=60, clock=clock)
    token, _ = tokens.issue("123", 1, "a")
    claims = _claims(token) | {"sub": "999"}
    forged = jwt.encode(claims, "another-secret-of-enough-length-0123456789", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for bad in (forged, unsigned):
        with pytest.raises(GruError) as info:
            tokens.verify(bad)
        assert info.value.code is Code.TOKEN_INVALID


def test_a_token_from_another_deployment_is_refused():
    clock = Clock()
    token, _ = TokenService("a" * 32, ttl=60, clock=clock).issue("123", 1, "a")
    with pytest.raises(GruError):
        TokenService("b" * 32, ttl=60, clock=clock).verify(token)


def test_rotated_keys_verify_old_tokens_and_sign_with_the_new_key():
    clock = Clock()
    old_key, new_key = "o" * 32, "n" * 32
    old_token, _ = TokenService(old_key, ttl=60, clock=clock).issue("1", 1, "a")
    rotated = TokenService([new_key, old_key], ttl=60, clock=clock)
    assert rotated.verify(old_token).user_id == "1"  # nobody is logged out by the rotation
    new_token, _ = rotated.issue("2", 1, "b")
    assert TokenService(new_key, ttl=60, clock=clock).verify(new_token).user_id == "2"
    with pytest.raises(GruError):
        TokenService(old_key, ttl=60, clock=clock).verify(new_token)


@pytest.mark.parametrize("now", [1_800_000_000.0, 1_800_000_063.9])
def test_a_token_is_valid_for_exactly_its_time_to_live(now):
    clock = Clock(now)
    tokens = TokenService("k" * 32, ttl=60, clock=clock)
    token, identity = tokens.issue("123", 1, "a")
    assert identity.expires_at == int(now) + 60
    clock.now = int(now) + 59.999
    assert tokens.verify(token) == identity
    clock.now = int(now) + 60  # the second it expires, it is refused
    with pytest.raises(GruError) as info:
        tokens.verify(token)
    assert info.value.code is Code.TOKEN_EXPIRED


def test_expiry_follows_the_services_clock_not_the_hosts():
    clock = Clock(1_000_000_000.0)  # long before the host's time
    tokens = TokenService("k" * 32, ttl=60, clock=clock)
    token, identity = tokens.issue("123", 1, "a")
    assert tokens.verify(token) == identity
    clock.now += 60
    with pytest.raises(GruError) as info:
        tokens.verify(token)
    assert info.value.code is Code.TOKEN_EXPIRED  # told "expired", not "invalid"


def _token_of_length(tokens, length):
    """A token the service signed whose text is exactly ``length`` characters (the name pads it)."""
    for size in range(length):
        token, _ = tokens.issue("1", 1, "n" * size)
        if len(token) >= length:
            assert len(token) == length, f"no token of {length} characters"
            return token
    raise AssertionError("unreachable")


def test_tokens_up_to_4096_characters_are_accepted_and_longer_ones_refused():
    tokens = TokenService("k" * 32, ttl=60, clock=Clock())
    assert tokens.verify(_token_of_length(tokens, 4096)).user_id == "1"
    with pytest.raises(GruError) as info:
        tokens.verify(_token_of_length(tokens, 4097))  # signed, yet too long to be read at all
    assert info.value.code is Code.TOKEN_INVALID and "malformed" in info.value.message


@pytest.mark.parametrize("claims", [
    {"utp": 1},  # no name
    {"nam": "a"},  # no type
    {"utp": None, "nam": "a"},
    {"utp": "teacher", "nam": "a"},
    {"utp": 1, "nam": "a", "exp": "soon"},
], ids=["no-name", "no-type", "null-type", "text-type", "text-exp"])
def test_a_signed_token_with_incomplete_claims_is_invalid_not_a_crash(claims):
    tokens = TokenService("k" * 32, ttl=60, clock=Clock())
    token = jwt.encode({"iss": "gru", "sub": "1", "exp": 1_800_000_060} | claims, "k" * 32, algorithm="HS256")
    with pytest.raises(GruError) as info:
        tokens.verify(token)
    assert info.value.code is Code.TOKEN_INVALID
