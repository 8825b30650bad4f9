"""``token1`` verifiers: how the ticket service asks whether the business system vouches for a user.

Chosen by ``GRU_TOKEN1_VERIFIER``:

* ``accept``: any non-empty token (development only; a warning is logged at start).
* ``hmac``: ``token1 = "<expires>.<hex>"`` where ``expires`` is a Unix time in seconds and ``hex``
  is HMAC-SHA256 with ``GRU_TOKEN1_SECRET`` over ``"<userId>|<userType>|<expires>"``
  (see :func:`sign_token1`). Only the canonical spelling is accepted: ASCII decimal digits without
  leading zeros, lowercase hex; anything else (other digit scripts, ``0``-padding, uppercase) is a
  different token and is rejected.
* ``http``: POST ``{"userId", "userType", "userName", "token1"}`` as JSON to ``GRU_TOKEN1_URL``;
  HTTP 200 with ``{"valid": true}`` accepts, ``{"valid": false}`` or HTTP 401/403 rejects, a
  timeout, a connection error or any other answer means the business system is unavailable.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import requests

from gru.errors import Code, GruError

log = logging.getLogger(__name__)

MAX_TOKEN1_LENGTH = 4096

# The one spelling sign_token1 produces. Spelled-out ASCII classes: ``\d`` and ``str.isdigit`` also
# take other scripts' digits and superscripts, which int() then reads as another token or refuses.
HMAC_TOKEN1 = re.compile(r"(0|[1-9][0-9]{0,11})\.([0-9a-f]{64})")


class Token1Verifier(ABC):
    """Decides whether ``token1`` proves the claimed user; raises :class:`GruError` if not."""

    name = "abstract"

    @abstractmethod
    def verify(self, user_id: str, user_type: int, user_name: str, token1: str) -> None:
        """Return quietly when accepted; raise ``TOKEN1_REJECTED`` or ``UNAVAILABLE`` otherwise."""


class AcceptVerifier(Token1Verifier):
    """Accepts any non-empty token: for development, never for production."""

    name = "accept"

    def __init__(self) -> None:
        log.warning("token1 verifier is 'accept': ANY non-empty token1 is accepted (development only)")

    def verify(self, user_id: str, user_type: int, user_name: str, token1: str) -> None:
        if not token1:
            raise GruError(Code.TOKEN1_REJECTED, "token1 is empty")


def sign_token1(secret: str, user_id: str, user_type: int, expires: int) -> str:
    """Make the ``hmac`` scheme's token1, as a business system would."""
    return f"{expires}.{_digest(secret, user_id, user_type, expires)}"


def _digest(secret: str, user_id: str, user_type: int, expires: int) -> str:
    message = f"{user_id}|{user_type}|{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class HmacVerifier(Token1Verifier):
    """Checks a shared-secret signature over user id, type and expiry."""

    name = "hmac"

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def verify(self, user_id: str, user_type: int, user_name: str, token1: str) -> None:
        match = HMAC_TOKEN1.fullmatch(token1)
        if match is None:
            raise GruError(Code.TOKEN1_REJECTED, "token1 is not of the form <expires>.<signature>")
        expires, signature = int(match[1]), match[2]
        expected = _digest(self._secret, user_id, user_type, expires)
        if not hmac.compare_digest(expected, signature):
            raise GruError(Code.TOKEN1_REJECTED, "token1 signature does not match this user")
        if expires <= self._clock():
            raise GruError(Code.TOKEN1_REJECTED, "token1 has expired")


class HttpVerifier(Token1Verifier):
    """Asks the business system over HTTP, bounded by a timeout so a slow system never hangs us."""

    name = "http"

    def __init__(self, url: str, timeout: float, session: requests.Session | None = None) -> None:
        self._url = url
        self._timeout = timeout
        self._session = session or requests.Session()

    def verify(self, user_id: str, user_type: int, user_name: str, token1: str) -> None:
        body = {"userId": user_id, "userType": user_type, "userName": user_name, "token1": token1}
        try:
            response = self._session.post(self._url, json=body, timeout=self._timeout)
        except requests.Timeout:
            log.warning("token1 check timed out after %.1fs", self._timeout)
            raise GruError(Code.UNAVAILABLE, "business system did not answer in time") from None
        except requests.RequestException as exc:
            log.warning("token1 check failed: %s", type(exc).__name__)
            raise GruError(Code.UNAVAILABLE, "business system is unreachable") from None
        if response.status_code in (401, 403):
            raise GruError(Code.TOKEN1_REJECTED)
        if response.status_code != 200:
            log.warning("token1 check answered HTTP %s", response.status_code)
            raise GruError(Code.UNAVAILABLE, f"business system answered HTTP {response.status_code}")
        try:
            valid = response.json().get("valid")
        except (ValueError, AttributeError):
            raise GruError(Code.UNAVAILABLE, "business system answered with invalid JSON") from None
        if valid is not True:
            raise GruError(Code.TOKEN1_REJECTED)
