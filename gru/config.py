"""One settings object, read from ``GRU_*`` environment variables and validated at start.

Nobody else in Gru reads ``os.environ``: the composition root and ``gunicorn.conf.py`` call
:meth:`Settings.from_env` and pass the result down.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

ENV_PREFIX = "GRU_"
MIN_SECRET_LENGTH = 32  # GRU_SECRET's keys, and GRU_TOKEN1_SECRET in production


class ConfigError(ValueError):
    """The environment describes a configuration Gru refuses to start with."""


def _check_sentinel_url(url: str) -> None:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/db/master-name``: every sentinel
    with its port, and the master's name (the one in the sentinels' ``sentinel monitor`` line)."""
    parts = urlsplit(url)
    for host_port in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel {host_port!r} is not HOST:PORT "
                             "(redis+sentinel://host1:26379,host2:26379/0/master-name)")
    path = parts.path.split("/")
    if len(path) < 3 or not path[1].isdigit() or not path[2]:
        raise ValueError("must name the database and the master: redis+sentinel://host1:26379,host2:26379/0/master-name")


class Settings(BaseModel):
    """Every tunable of a Gru process; field ``x`` is read from ``GRU_X``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Literal["development", "production"] = "development"
    role: Literal["all", "ticket", "node"] = "all"
    bind: str = "0.0.0.0:30000"
    workers: int = Field(1, ge=1, le=256)
    worker_connections: int = Field(20000, ge=10)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    secret: SecretStr | None = None
    node_name: str = Field("node_1", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    node_weight: float = Field(1.0, gt=0, le=1000)  # share of new connections relative to other nodes
    public_addr: str | None = None

    token1_verifier: Literal["accept", "hmac", "http"] | None = None
    token1_secret: SecretStr | None = None
    token1_url: str | None = None
    token1_timeout: float = Field(3.0, gt=0, le=60)
    token_ttl: int = Field(86400, ge=10, le=30 * 86400)
    user_types: str = "0:TEACHER,1:STUDENT"

    auth_timeout: float = Field(10.0, gt=0, le=3600)
    max_content: int = Field(65536, ge=1, le=16 * 1024 * 1024)
    max_payload: int = Field(1_000_000, ge=1024, le=64 * 1024 * 1024)
    ping_interval: float = Field(25.0, gt=0, le=600)
    ping_timeout: float = Field(20.0, gt=0, le=600)
    cors_origins: str | None = None

    # delivery guarantees and limits
    history_size: int = Field(200, ge=0, le=100_000)
    history_ttl: float = Field(600.0, ge=1, le=7 * 86400)
    offline_size: int = Field(100, ge=1, le=100_000)
    max_expire: int = Field(7 * 86400, ge=1, le=30 * 86400)
    online_scope: Literal["group", "any"] = "group"
    unicast_scope: Literal["group", "any"] = "group"
    rate_limit: float = Field(20.0, gt=0, le=100_000)
    rate_burst: int = Field(40, ge=1, le=100_000)
    max_connections: int = Field(20000, ge=1, le=1_000_000)
    max_pending_per_address: int = Field(50, ge=1, le=1_000_000)
    # connections that hold resources (see docs/security.md)
    header_timeout: float = Field(10.0, gt=0, le=600)  # time to send a complete request head
    keepalive_timeout: float = Field(5.0, gt=0, le=600)  # idle time allowed between requests on a connection
    body_timeout: float = Field(30.0, gt=0, le=600)  # time to send a request body once its head is in
    max_backlog: int = Field(4 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)  # unsent bytes per connection

    redis_url: str | None = None
    redis_prefix: str = Field("gru", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    heartbeat_interval: float = Field(2.0, ge=0.1, le=60)
    node_ttl: float = Field(6.0, ge=0.5, le=600)
    drain_seconds: float = Field(2.0, ge=0, le=300)

    # legacy clients (Engine.IO 3: socket.io 1.x/2.x era), see docs/legacy.md
    legacy_eio3: bool = True
    legacy_max_body: int | None = Field(None, ge=1024, le=256 * 1024 * 1024)
    legacy_cookie: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,64}$")
    legacy_utf8_dialect: Literal["auto", "v1", "v2"] = "auto"

    # operations: publish API keys, logs, metrics, demo page (see docs/operations.md)
    api_keys: SecretStr | None = None
    log_format: Literal["text", "json"] = "text"
    metrics_dir: str | None = None
    demo: bool | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``GRU_*`` variables; raise :class:`ConfigError` naming each bad one."""
        fields = {}
        for name, value in environ.items():
            if not name.startswith(ENV_PREFIX):
                continue
            field = name[len(ENV_PREFIX) :].lower()
            if field not in cls.model_fields:
                continue
            if value.strip() == "":
                continue  # an empty variable means "use the default"
            fields[field] = value.strip()
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:30000")
        return value

    @field_validator("public_addr", "token1_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "redis+sentinel", "unix"):
            raise ValueError("must be a redis://, rediss://, redis+sentinel:// or unix:// URL")
        if value is not None and urlsplit(value).scheme == "redis+sentinel":
            _check_sentinel_url(value)
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_keys(value.get_secret_value())
        return value

    @field_validator("user_types")
    @classmethod
    def _check_user_types(cls, value: str) -> str:
        parse_user_types(value)
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        problems = self._production_problems() if self.env == "production" else []
        if self.secret is not None and any(len(key) < MIN_SECRET_LENGTH for key in self.token_keys):
            problems.append(f"GRU_SECRET: every key must be at least {MIN_SECRET_LENGTH} characters "
                            "(several keys: comma-separated)")
        if self.token1_verifier == "hmac" and self.token1_secret is None:
            problems.append("GRU_TOKEN1_VERIFIER=hmac requires GRU_TOKEN1_SECRET")
        if self.token1_verifier == "http" and self.token1_url is None:
            problems.append("GRU_TOKEN1_VERIFIER=http requires GRU_TOKEN1_URL")
        if self.redis_url is None and self.workers > 1:
            problems.append("GRU_WORKERS > 1 requires GRU_REDIS_URL (workers share state through Redis)")
        if self.redis_url is None and self.role != "all":
            problems.append(f"GRU_ROLE={self.role} requires GRU_REDIS_URL (ticket service and nodes meet in Redis)")
        if self.role == "node" and self.public_addr is None:
            problems.append("GRU_ROLE=node requires GRU_PUBLIC_ADDR (the address tickets hand out for this node)")
        if self.node_ttl < 2 * self.heartbeat_interval:
            problems.append("GRU_NODE_TTL must be at least twice GRU_HEARTBEAT_INTERVAL (one lost beat is no death)")
        if self.redis_url is not None and self.secret is None:
            problems.append("GRU_REDIS_URL requires GRU_SECRET (every process must sign and verify with the same key)")
        if problems:
            raise ValueError("; ".join(problems))  # every problem at once: one restart fixes them all
        return self

    def _production_problems(self) -> list[str]:
        """What production refuses: no signing key, a guessable business key, any verifier or any
        web origin accepted."""
        problems = []
        if self.secret is None:
            problems.append("GRU_ENV=production requires GRU_SECRET")
        if self.token1_verifier in (None, "accept"):
            problems.append("GRU_ENV=production requires GRU_TOKEN1_VERIFIER=hmac or http (accept is for development)")
        if self.token1_verifier == "hmac" and self.token1_secret is not None \
                and len(self.token1_secret.get_secret_value()) < MIN_SECRET_LENGTH:
            problems.append(f"GRU_TOKEN1_SECRET must be at least {MIN_SECRET_LENGTH} characters in production "
                            "(it is all that stands between a guesser and any user's ticket)")
        if self.cors_origins is None:
            problems.append("GRU_ENV=production requires GRU_CORS_ORIGINS (the web origins allowed to use Gru)")
        elif "*" in (origin.strip() for origin in self.cors_origins.split(",")):
            problems.append("GRU_CORS_ORIGINS must list the web origins allowed to use Gru in production, not '*'")
        return problems

    @property
    def verifier(self) -> str:
        """The token1 verifier in force: ``accept`` is the development default."""
        return self.token1_verifier or "accept"

    @property
    def token_keys(self) -> list[str]:
        """Keys for token2: the first signs, all verify (rotation without logging anyone out)."""
        if self.secret is None:
            return [_EPHEMERAL_SECRET]
        return [key.strip() for key in self.secret.get_secret_value().split(",") if key.strip()]

    @property
    def signing_secret(self) -> str:
        """The key that signs token2; a development process without one gets a random key per start."""
        return self.token_keys[0]

    @property
    def user_type_names(self) -> dict[int, str]:
        """Mapping of ``userType`` numbers to role names, e.g. ``{0: "TEACHER"}``."""
        return parse_user_types(self.user_types)

    @property
    def api_key_names(self) -> dict[str, str]:
        """Publish API keys mapped to their names (``{"<key>": "lms"}``); empty when the API is off."""
        if self.api_keys is None:
            return {}
        return parse_api_keys(self.api_keys.get_secret_value())

    @property
    def demo_enabled(self) -> bool:
        """The ``/demo`` page: on in development, off in production unless ``GRU_DEMO=true``."""
        return self.demo if self.demo is not None else self.env == "development"

    def origin_allowed(self, origin: str | None, own_origin: str | None = None) -> bool:
        """Whether a browser page of ``origin`` may use Gru: listed in ``GRU_CORS_ORIGINS``, or Gru's
        own origin (same-origin pages, and clients such as websocket-client that send the server's)."""
        allowed = self.cors_allowed
        return origin is None or allowed == "*" or origin in allowed or origin == own_origin

    @property
    def cors_allowed(self) -> str | list[str]:
        """The CORS allow-list in the form python-engineio expects."""
        origins = [o.strip() for o in (self.cors_origins or "*").split(",") if o.strip()]
        return "*" if origins == ["*"] else origins


_EPHEMERAL_SECRET = secrets.token_urlsafe(32)


def parse_user_types(value: str) -> dict[int, str]:
    """Parse ``"0:TEACHER,1:STUDENT"``; raise ``ValueError`` on anything else."""
    result: dict[int, str] = {}
    for item in value.split(","):
        number, sep, name = item.strip().partition(":")
        if not sep or not re.fullmatch(r"-?[0-9]{1,6}", number.strip()) or not name.strip():
            raise ValueError(f"entry {item.strip()!r} must be NUMBER:NAME, e.g. 0:TEACHER")
        result[int(number)] = name.strip()
    return result


API_KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_API_KEY_LENGTH = 16


def parse_api_keys(value: str) -> dict[str, str]:
    """Parse ``"name:key,name2:key2"`` into ``{key: name}``; a name may hold two keys during a rotation.

    Error messages name the entry by position, never by its key.
    """
    result: dict[str, str] = {}
    for position, item in enumerate(value.split(","), start=1):
        name, sep, key = item.strip().partition(":")
        if not sep or not API_KEY_NAME.match(name.strip()):
            raise ValueError(f"entry {position} must be NAME:KEY with a name of letters, digits, '_', '.' or '-'")
        key = key.strip()
        if len(key) < MIN_API_KEY_LENGTH or not key.isprintable() or " " in key or "," in key:
            raise ValueError(f"entry {position} ({name.strip()}): the key must be at least {MIN_API_KEY_LENGTH} "
                             "printable characters without spaces")
        if key in result:
            raise ValueError(f"entry {position} ({name.strip()}): the same key is listed twice")
        result[key] = name.strip()
    return result


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's report into one line per bad variable, named as the user typed it."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        name = f"{ENV_PREFIX}{where.upper()}" if where else "configuration"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(lines)
