"""``GET /ticket`` as a service: validate the query, verify token1, pick nodes, issue token2."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gru.errors import Code, GruError
from gru.services import fields
from gru.services.nodes import NodeDirectory
from gru.services.token1 import MAX_TOKEN1_LENGTH, Token1Verifier
from gru.services.tokens import TokenService

REQUIRED = ("userType", "userName", "userId", "token1")


class TicketService:
    """Turns a user's business token into a node address and a ``token2``."""

    def __init__(self, verifier: Token1Verifier, tokens: TokenService, nodes: NodeDirectory,
                 user_types: dict[int, str], clock: Callable[[], float] = time.time) -> None:
        self._verifier = verifier
        self._tokens = tokens
        self._nodes = nodes
        self._user_types = user_types
        self._clock = clock

    def issue(self, query: Mapping[str, str], default_addr: str) -> dict:
        """Return the ticket's ``data``; ``default_addr`` stands in for a node with no public address."""
        user_id, user_type, user_name, token1 = self._parse(query)
        self._verifier.verify(user_id, user_type, user_name, token1)
        primary, backups = self._nodes.choose()
        token, _ = self._tokens.issue(user_id, user_type, user_name)
        return {
            "time": int(self._clock() * 1000),
            "addr": primary.addr or default_addr,
            "name": primary.name,
            "token": token,
            "backupNodes": [{"addr": n.addr or default_addr, "name": n.name} for n in backups],
        }

    def _parse(self, query: Mapping[str, str]) -> tuple[str, int, str, str]:
        missing = [name for name in REQUIRED if not query.get(name)]
        if missing:
            raise GruError(Code.BAD_REQUEST, f"missing parameter: {', '.join(missing)}")
        bad = Code.BAD_REQUEST
        user_type = fields.parse_user_type(query["userType"], self._user_types, "userType", bad)
        user_id, _ = fields.parse_id(query["userId"], "userId", bad)
        user_name = fields.parse_name(query["userName"], "userName", bad)
        token1 = query["token1"]
        if len(token1) > MAX_TOKEN1_LENGTH or not token1.isprintable():
            raise GruError(bad, f"token1 must be at most {MAX_TOKEN1_LENGTH} printable characters")
        return user_id, user_type, user_name, token1
