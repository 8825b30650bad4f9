"""``token2``: a signed, expiring proof of identity that every node of a deployment accepts.

It is a JWT (HS256, PyJWT) signed with ``GRU_SECRET``. It is reusable until it expires, because
socket.io clients re-send the same ``auth`` after every automatic reconnect and may fail over to
a backup node.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt

from gru.errors import Code, GruError
from gru.models import Identity

ALGORITHM = "HS256"
ISSUER = "gru"
DECODE_OPTIONS = {"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["sub", "exp", "iss"]}


class TokenService:
    """Issues and verifies ``token2``; the clock is injected so tests need not sleep."""

    def __init__(self, keys: str | list[str], ttl: int, clock: Callable[[], float] = time.time) -> None:
        self._keys = [keys] if isinstance(keys, str) else list(keys)
        self._ttl = ttl
        self._clock = clock

    def issue(self, user_id: str, user_type: int, user_name: str) -> tuple[str, Identity]:
        """Sign a token for this user, valid for the configured time to live."""
        now = self._clock()
        expires_at = int(now) + self._ttl
        claims = {"iss": ISSUER, "sub": user_id, "utp": user_type, "nam": user_name,
                  "iat": int(now), "exp": expires_at}
        token = jwt.encode(claims, self._keys[0], algorithm=ALGORITHM)
        return token, Identity(user_id, user_type, user_name, float(expires_at))

    def verify(self, token: object) -> Identity:
        """Return the identity a token proves; raise ``TOKEN_INVALID`` or ``TOKEN_EXPIRED``."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise GruError(Code.TOKEN_INVALID, "token2 is missing or malformed")
        claims = self._decode(token)
        try:
            identity = Identity(str(claims["sub"]), int(claims["utp"]), str(claims["nam"]), float(claims["exp"]))
        except (KeyError, TypeError, ValueError):
            raise GruError(Code.TOKEN_INVALID, "token2 claims are incomplete") from None
        if identity.expires_at <= self._clock():
            raise GruError(Code.TOKEN_EXPIRED)
        return identity

    def _decode(self, token: str) -> dict:
        """The claims of a token signed with any of the keys (the first signs, all verify)."""
        for key in self._keys:
            try:
                return jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER, options=DECODE_OPTIONS)
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                break
        raise GruError(Code.TOKEN_INVALID, "token2 signature or format is invalid")
