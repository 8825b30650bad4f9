"""Redis backend: presence, node registry and message ids shared by every worker of every node.

Layout (every key from :class:`Keys`, under ``GRU_REDIS_PREFIX``):

* ``instances`` hash: instance id → JSON ``{node, addr, connections, state}`` (one per worker process)
* ``alive:<instance>``: set with a TTL of ``node_ttl`` by every heartbeat; its absence means dead
* ``handed`` hash: node → tickets that ever named it; ``seen`` hash: instance → its node's ``handed``
  at the instance's last heartbeat (what it reported includes those tickets that came)
* ``presence:<group>`` hash: ``<instance>|<conn>`` → JSON ``[user id, user type, display id]``
* ``holders:<group>`` hash: instance → how many of its connections ``presence:<group>`` lists, kept
  by the presence scripts in the same step, so a broadcast reads O(processes), not O(members)
* ``user:<type>:<id>`` hash: ``<instance>|<conn>`` → group
* ``conns:<instance>`` set: the presence entries an instance owns, so they can be removed after it dies
* ``last-id``: the last message id handed out
* ``history:<stream>`` sorted set (score: id) and ``dropped:<stream>``; ``offline:<type>:<id>`` sorted set
* channel ``socketio:<instance>``: messages relayed to one process, a unicast to each process holding
  the target, a broadcast to each process holding a member of the group (see :meth:`RedisBackend.broadcast`);
  channel ``socketio``: python-socketio's own messages between processes (no Gru message goes there)

Reads filter out entries of dead instances, so a crashed node's users leave every online list
within ``node_ttl`` seconds; a janitor then deletes what the dead instance left behind. Each
process keeps a mirror of its own entries and rewrites them when Redis lost them (restart) or
when a write failed during an outage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from socketio.redis_manager import parse_redis_sentinel_url

from gru.backends.base import Backend, BackendUnavailable, Broadcast, Placement, Routed, Unicast, salt
from gru.backends.redis_lane import Lane
from gru.config import ConfigError
from gru.models import Instance, Node, UserId, UserKey

Envelope = Callable[[UserKey], tuple[bytes, bytes]]
GroupEnvelope = Callable[[str, "str | None"], tuple[bytes, bytes]]

log = logging.getLogger(__name__)

# How much earlier than the lane's reply timeout a message script stops accepting: node clocks may
# run ahead of Redis's by up to a quarter second (NTP keeps them within milliseconds), and the
# reply gets another quarter second to reach the node and be read.
LATE_MARGIN = 0.5

ALLOCATE_ID = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local id = math.max(last + 1, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', id))
return id
"""


# Ids only grow, so what the bounds drop is always the oldest. The dropped-id marker is written,
# with the stream's TTL, only when it moves: once it expires, every id it covered is older than
# the TTL, so a reader asking from there is told "incomplete" by the min_id rule anyway.
KEEP = """
local function keep(key, dropped_key, id, member, size, ttl_ms, min_id)
  redis.call('ZADD', key, id, member)
  local dropped = 0
  local excess = redis.call('ZCARD', key) - size
  if excess > 0 then
    local old = redis.call('ZPOPMIN', key, excess)
    dropped = tonumber(old[#old])
  end
  local stale = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. min_id, 'WITHSCORES')
  if #stale > 0 then
    dropped = math.max(dropped, tonumber(stale[#stale]))
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. min_id)
  end
  if dropped > 0 and dropped > tonumber(redis.call('GET', dropped_key) or '0') then
    redis.call('SET', dropped_key, string.format('%d', dropped), 'PX', ttl_ms)
  end
  redis.call('PEXPIRE', key, ttl_ms)
end
"""

# A new message: the next id (at least the floor) and the body with that id first.
NEW_MESSAGE = """
local function new_message(last_key, floor, body_without_id)
  local id = string.format('%d', math.max(tonumber(redis.call('GET', last_key) or '0') + 1, tonumber(floor)))
  redis.call('SET', last_key, id)
  local rest = string.sub(body_without_id, 2)
  return id, '{"id":' .. id .. (rest == '}' and '' or ',') .. rest
end
"""

# Refusals a message script makes before it writes anything: ``late`` once Redis's clock is past
# the deadline the node gave (the node answers -14 by then, so the message must not go out after
# all); ``unreachable`` when another live process holding a recipient is not subscribed on this
# server (e.g. still re-subscribing after a Sentinel failover), where a publish would reach nobody.
GUARDS = """
local function late(deadline_ms)
  if deadline_ms == '0' then
    return false
  end
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(deadline_ms)
end
local function unreachable(owners, me, channel_prefix)
  for owner, live in pairs(owners) do
    if live and owner ~= me and redis.call('PUBSUB', 'NUMSUB', channel_prefix .. owner)[2] == 0 then
      return true
    end
  end
  return false
end
"""

HISTORY_APPEND = KEEP + """
keep(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])
return 1
"""

# KEYS: presence of the target user, last-id, last group, history, dropped, offline queue.
# ARGV: 1 id floor, 2 alive-key prefix, 3 instance-channel prefix, 4 own instance, 5 scoped (1/0),
# 6 scope group, 7 body without id, 8 history size (0: none), 9 history ttl ms, 10 history min id,
# 11 queue until ms (0: refuse when offline), 12 queue size, 13/14 relay envelope head/tail,
# 15 deadline (Unix ms, 0: none).
UNICAST = KEEP + NEW_MESSAGE + GUARDS + """
if late(ARGV[15]) then
  return {'late', '0'}
end
local fields = redis.call('HGETALL', KEYS[1])
local alive, holders, groups, dead = {}, {}, {}, {}
local online = false
for i = 1, #fields, 2 do
  local field = fields[i]
  local owner = string.sub(field, 1, (string.find(field, '|', 1, true) or (#field + 1)) - 1)
  if alive[owner] == nil then
    alive[owner] = redis.call('EXISTS', ARGV[2] .. owner) == 1
  end
  if alive[owner] then
    holders[owner] = true
    groups[fields[i + 1]] = true
    online = true
  else
    dead[#dead + 1] = field
  end
end
if #dead > 0 then
  redis.call('HDEL', KEYS[1], unpack(dead))
end
if ARGV[5] == '1' then
  local allowed
  if online then
    allowed = groups[ARGV[6]] ~= nil
  else
    allowed = redis.call('GET', KEYS[3]) == ARGV[6]
  end
  if not allowed then
    return {'forbidden', '0'}
  end
end
local queue_until = ARGV[11]
if not online and queue_until == '0' then
  return {'offline', '0'}
end
if online and unreachable(holders, ARGV[4], ARGV[3]) then
  return {'unreachable', '0'}
end
local id, body = new_message(KEYS[2], ARGV[1], ARGV[7])
if ARGV[8] ~= '0' then
  keep(KEYS[4], KEYS[5], id, body, tonumber(ARGV[8]), ARGV[9], ARGV[10])
end
if not online then
  redis.call('ZADD', KEYS[6], id, '[' .. queue_until .. ',' .. body .. ']')
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -tonumber(ARGV[12]) - 1)
  redis.call('PEXPIREAT', KEYS[6], queue_until, 'GT')
  redis.call('PEXPIREAT', KEYS[6], queue_until, 'NX')
  return {'queued', id}
end
for owner in pairs(holders) do
  if owner ~= ARGV[4] then
    redis.call('PUBLISH', ARGV[3] .. owner, ARGV[13] .. body .. ARGV[14])
  end
end
return {'sent', id}
"""

# A broadcast goes to the instance channel of each other live process holding a member of the group
# (read from ``holders:<group>``, one field per process), so a process pays only for its own groups.
# A member whose presence was written before the script runs is reached: its process is a holder.
# KEYS: last-id, history, dropped, holders of the group. ARGV: 1 id floor, 2 body without id,
# 3 history size (0: none), 4 history ttl ms, 5 history min id, 6/7 relay envelope head/tail,
# 8 deadline (Unix ms, 0: none), 9 alive-key prefix, 10 instance-channel prefix, 11 own instance.
BROADCAST = KEEP + NEW_MESSAGE + GUARDS + """
if late(ARGV[8]) then
  return {'late', '0'}
end
local holders = {}
for _, owner in ipairs(redis.call('HKEYS', KEYS[4])) do
  holders[owner] = redis.call('EXISTS', ARGV[9] .. owner) == 1
end
if unreachable(holders, ARGV[11], ARGV[10]) then
  return {'unreachable', '0'}
end
local id, body = new_message(KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '0' then
  keep(KEYS[2], KEYS[3], id, body, tonumber(ARGV[3]), ARGV[4], ARGV[5])
end
local relay = ARGV[6] .. body .. ARGV[7]
for owner, live in pairs(holders) do
  if live and owner ~= ARGV[11] then
    redis.call('PUBLISH', ARGV[10] .. owner, relay)
  end
end
return {'sent', id}
"""

# One connection's presence entry, with its process's count in ``holders:<group>`` moved only when
# the entry itself appears or goes (so writing an entry twice, as a replay does, counts it once).
# KEYS: presence of the group, user, conns of the instance, holders of the group.
# ARGV: 1 field, 2 presence value, 3 group, 4 conns member, 5 instance.
PRESENCE_ADD = """
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""

# The same KEYS; ARGV: 1 field, 2 conns member, 3 instance.
PRESENCE_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('HINCRBY', KEYS[4], ARGV[3], -1) <= 0 then
  redis.call('HDEL', KEYS[4], ARGV[3])
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
return 1
"""

# An instance's count in ``holders:<group>`` from the presence hash itself (after a replay, where
# entries of this process may have been dropped by readers that took it for dead).
# KEYS: presence of the group, holders of the group. ARGV: 1 instance.
HOLDERS_RECOUNT = """
local prefix, count = ARGV[1] .. '|', 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #prefix) == prefix then
    count = count + 1
  end
end
if count > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], count)
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return count
"""

OFFLINE_TAKE = """
local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return entries
"""

# KEYS: instances, alive key of the instance, handed, seen. ARGV: 1 instance, 2 its JSON, 3 TTL ms,
# 4 its node. Returns whether the instance was new (its presence must be written again).
HEARTBEAT = """
local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], redis.call('HGET', KEYS[3], ARGV[4]) or '0')
return created
"""

# gru.backends.base.rank_nodes in one step with the ticket's count. A node's pending tickets are
# those handed since its processes' heartbeats (on average over its processes, which share its
# connections). KEYS: instances, handed, seen. ARGV: 1 alive-key prefix, 2 salt.
# Returns {number of full nodes, JSON list of [name, addr, connections, state, capacity, weight, pending]}.
PLACE = """
local raw = redis.call('HGETALL', KEYS[1])
local nodes, names = {}, {}
for i = 1, #raw, 2 do
  local id = raw[i]
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then
    local info = cjson.decode(raw[i + 1])
    local node = nodes[info.node]
    if node == nil then
      node = {name = info.node, addr = '', connections = 0, capacity = 0, bounded = true, weight = 1,
              state = info.state, seen = {}}
      nodes[info.node] = node
      names[#names + 1] = info.node
    end
    if node.addr == '' and type(info.addr) == 'string' then node.addr = info.addr end
    node.connections = node.connections + (tonumber(info.connections) or 0)
    local capacity = tonumber(info.capacity) or 0
    if capacity > 0 then node.capacity = node.capacity + capacity else node.bounded = false end
    if (tonumber(info.weight) or 0) > 0 then node.weight = tonumber(info.weight) end
    if node.state ~= 'up' then node.state = info.state end
    node.seen[#node.seen + 1] = redis.call('HGET', KEYS[3], id)
  end
end
local room, full = {}, 0
for _, name in ipairs(names) do
  local node = nodes[name]
  local handed = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  local seen = 0
  for _, value in ipairs(node.seen) do seen = seen + (tonumber(value) or handed) end
  node.pending = math.max(0, math.floor(handed - seen / #node.seen + 0.5))
  if not node.bounded then node.capacity = 0 end
  node.turn = redis.sha1hex(ARGV[2] .. name)
  node.score = (node.connections + node.pending + 1) / node.weight
  if node.state == 'up' then
    if node.capacity == 0 or node.connections + node.pending < node.capacity then
      room[#room + 1] = node
    else
      full = full + 1
    end
  end
end
table.sort(room, function(a, b)
  if a.score ~= b.score then return a.score < b.score end
  return a.turn < b.turn
end)
local out = {}
for i, node in ipairs(room) do
  if i == 1 then
    redis.call('HINCRBY', KEYS[2], node.name, 1)
    node.pending = node.pending + 1
  end
  out[i] = {node.name, node.addr, node.connections, node.state, node.capacity, tostring(node.weight), node.pending}
end
if #out == 0 then
  return {full, '[]'}
end
return {full, cjson.encode(out)}
"""


class Keys:
    """Every Redis key and channel name of a deployment, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def presence(self, group: str) -> str:
        return self.key("presence", group)

    def holders(self, group: str) -> str:
        return self.key("holders", group)

    def user(self, user: UserKey) -> str:
        return f"{self.prefix}:user:{user.type}:{user.id}"

    def history(self, stream: str) -> str:
        return f"{self.prefix}:history:{stream}"

    def dropped(self, stream: str) -> str:
        return f"{self.prefix}:dropped:{stream}"

    def offline(self, user: UserKey) -> str:
        return f"{self.prefix}:offline:{user.type}:{user.id}"

    def last_group(self, user: UserKey) -> str:
        return f"{self.prefix}:lastgroup:{user.type}:{user.id}"

    def conns(self, instance: str) -> str:
        return self.key("conns", instance)

    def alive(self, instance: str) -> str:
        return self.key("alive", instance)

    @property
    def instances(self) -> str:
        return self.key("instances")

    @property
    def handed(self) -> str:
        return self.key("handed")

    @property
    def seen(self) -> str:
        return self.key("seen")

    @property
    def last_id(self) -> str:
        return self.key("last-id")

    @property
    def channel(self) -> str:
        return self.key("socketio")

    def instance_channel(self, instance: str) -> str:
        return self.key("socketio", instance)


# Pooled connections per process (commands other than the per-message lane: presence, history,
# sweeps) and how long a caller waits for one when all are busy. redis-py's default pool raises
# "Too many connections" at once instead, which a burst of authentications turns into refusals.
POOL_CONNECTIONS = 100
POOL_WAIT = 2.0


class BlockingSentinelConnectionPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """A Sentinel pool that makes callers wait for a free connection, like ``BlockingConnectionPool``
    (redis-py has no blocking Sentinel pool of its own)."""


def connect(url: str, **options) -> redis.Redis:
    """A client for ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://`` URLs (the
    latter checked against the sentinels at once, see :func:`check_sentinels`), whose pool makes a
    caller wait up to ``POOL_WAIT`` for a free connection rather than fail."""
    pool_options = {"max_connections": POOL_CONNECTIONS, "timeout": POOL_WAIT}
    if urlparse(url).scheme == "redis+sentinel":
        sentinels, service, kwargs = parse_redis_sentinel_url(url)
        # each sentinel asked once: with three of them, retrying one with back-off only delays the next
        once = {key: value for key, value in options.items() if key.startswith("socket_")}
        sentinel = redis.sentinel.Sentinel(sentinels, sentinel_kwargs={**once, "retry": Retry(NoBackoff(), 0)},
                                           **kwargs, **options)
        check_sentinels(sentinel, service)
        return sentinel.master_for(service, connection_pool_class=BlockingSentinelConnectionPool, **pool_options,
                                   **options)
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, **pool_options, **options))


def check_sentinels(sentinel: redis.sentinel.Sentinel, service: str) -> None:
    """Refuse to start when the sentinels answer but none monitors ``service`` (a wrong name in
    ``GRU_REDIS_URL``); log an error and go on when none answers (Redis may come later, as
    without Sentinel: messages are refused with -14 meanwhile)."""
    addresses = ", ".join("{host}:{port}".format_map(s.connection_pool.connection_kwargs) for s in sentinel.sentinels)
    known: set[str] = set()
    answered = False
    for client in sentinel.sentinels:
        try:
            known.update(client.sentinel_masters())
            answered = True
        except redis.RedisError as exc:
            log.debug("sentinel %s: %s", client, exc)
    if not answered:
        log.error("GRU_REDIS_URL: no Redis Sentinel answers at %s; messages are refused until one does", addresses)
    elif service not in known:
        raise ConfigError(f"GRU_REDIS_URL: the Redis Sentinels at {addresses} monitor no master named {service!r} "
                          f"(they monitor: {', '.join(sorted(known)) or 'none'})")


def bare(user: UserKey) -> tuple[bytes, bytes]:
    """Relay a unicast's body as it is (for tools and tests that read instance channels themselves)."""
    return b"", b""


def bare_group(group: str, sender_conn: str | None) -> tuple[bytes, bytes]:
    """Relay a broadcast's body as it is (for tools and tests that read instance channels themselves)."""
    return b"", b""


class RedisBackend(Backend):
    """Shared state in Redis; one instance per worker process.

    ``envelope`` gives the text around a unicast's body that makes it, on the instance channel of
    a process holding the target, a delivery to that user's connections; ``group_envelope`` does
    the same for a broadcast, to the group's connections. Both come from the socket layer, so the
    backend relays messages without knowing their wire format.
    """

    def __init__(self, client: redis.Redis, keys: Keys, instance_id: str, node_ttl: float,
                 envelope: Envelope = bare, group_envelope: GroupEnvelope = bare_group) -> None:
        self._redis = client
        self._keys = keys
        self._instance = instance_id
        self._ttl_ms = int(node_ttl * 1000)
        self._envelope = envelope
        self._group_envelope = group_envelope
        self._lane = Lane(client)  # the per-message scripts
        self._reply_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._last_id, self._alive_prefix, self._channel_prefix = keys.last_id, keys.alive(""), keys.instance_channel("")
        self._allocate = client.register_script(ALLOCATE_ID)
        self._history_append = client.register_script(HISTORY_APPEND)
        self._unicast = client.register_script(UNICAST)
        self._broadcast = client.register_script(BROADCAST)
        self._presence_add, self._presence_remove = client.register_script(PRESENCE_ADD), \
            client.register_script(PRESENCE_REMOVE)
        self._holders_recount = client.register_script(HOLDERS_RECOUNT)
        self._offline_take = client.register_script(OFFLINE_TAKE)
        self._heartbeat, self._place = client.register_script(HEARTBEAT), client.register_script(PLACE)
        self._lock = threading.Lock()
        self._mine: dict[str, tuple[str, UserKey, UserId]] = {}  # conn → (group, user, display id)
        self._dirty = True  # replay our presence at the next heartbeat

    # -- message ids -------------------------------------------------------------------------

    def allocate_id(self, floor: int) -> int:
        try:
            return int(self._lane.evalsha(self._allocate, [self._keys.last_id], [floor]))
        except redis.RedisError as exc:
            raise BackendUnavailable(f"message id: {_describe(exc)}") from None

    def broadcast(self, message: Broadcast) -> int:
        """One script: id, history, and a publish on the instance channel of each *other* live
        process holding a member of the group (this process serves its own members itself)."""
        kept = message.kept
        stream = kept.stream if kept is not None else ""
        head, tail = self._group_envelope(message.group, message.sender_conn)
        keys = [self._last_id, self._keys.history(stream), self._keys.dropped(stream), self._keys.holders(message.group)]
        args = [message.floor, _encode(message.body), kept.size if kept else 0, int(kept.ttl * 1000) if kept else 0,
                kept.min_id if kept else 0, head, tail, self._deadline(), self._alive_prefix,
                self._channel_prefix, self._instance]
        outcome, message_id = self._read(lambda: self._lane.evalsha(self._broadcast, keys, args))
        _check_outcome(outcome)
        return int(message_id)

    def unicast(self, message: Unicast) -> Routed:
        """One script: presence with owner liveness, scope, id, history, then the offline queue or
        a publish on the instance channel of each *other* live process holding the target."""
        user, kept, scope = message.user, message.kept, message.scope_group
        stream = kept.stream if kept is not None else ""
        head, tail = self._envelope(user)
        keys = [self._keys.user(user), self._last_id, self._keys.last_group(user), self._keys.history(stream),
                self._keys.dropped(stream), self._keys.offline(user)]
        args = [message.floor, self._alive_prefix, self._channel_prefix, self._instance,
                0 if scope is None else 1, scope or "", _encode(message.body), kept.size if kept else 0,
                int(kept.ttl * 1000) if kept else 0, kept.min_id if kept else 0, message.queue_until_ms,
                message.queue_size, head, tail, self._deadline()]
        outcome, message_id = self._read(lambda: self._lane.evalsha(self._unicast, keys, args))
        _check_outcome(outcome)
        return Routed(outcome.decode(), int(message_id))

    def _deadline(self) -> int:
        """The Unix time (ms) after which a message script must refuse: by then the lane's read has
        not timed out yet (it started later, and lasts ``socket_timeout``), less a margin for the
        reply's way back and for this clock running ahead of Redis's (0: no timeout, no deadline)."""
        if not self._reply_timeout:
            return 0
        return int((time.time() + self._reply_timeout - min(LATE_MARGIN, self._reply_timeout / 2)) * 1000)

    # -- presence ----------------------------------------------------------------------------

    def presence_add(self, group: str, user: UserKey, display_id: UserId, conn_id: str) -> None:
        with self._lock:
            self._mine[conn_id] = (group, user, display_id)
        self._write(self._presence_add, self._added(conn_id, group, user, display_id))

    def presence_remove(self, group: str, user: UserKey, conn_id: str) -> None:
        with self._lock:
            self._mine.pop(conn_id, None)
        self._write(self._presence_remove, self._removed(self._instance, conn_id, group, user))

    def online(self, group: str) -> list[UserId]:
        entries = self._read(lambda: self._redis.hgetall(self._keys.presence(group)))
        live, dead = self._split_by_liveness(entries)
        if dead:
            self._forget_fields(self._keys.presence(group), dead)
        seen: dict[tuple[str, int], UserId] = {}
        for value in live.values():
            user_id, user_type, display_id = json.loads(value)
            seen.setdefault((user_id, user_type), display_id)
        return list(seen.values())

    def online_groups(self, user: UserKey) -> set[str]:
        entries = self._read(lambda: self._redis.hgetall(self._keys.user(user)))
        live, dead = self._split_by_liveness(entries)
        if dead:
            self._forget_fields(self._keys.user(user), dead)
        return {group.decode() for group in live.values()}

    def remember_group(self, user: UserKey, group: str, ttl: float) -> None:
        try:
            self._redis.set(self._keys.last_group(user), group, px=int(ttl * 1000))
        except redis.RedisError as exc:
            log.warning("could not remember the group of a user: %s", exc)

    def last_group(self, user: UserKey) -> str | None:
        value = self._read(lambda: self._redis.get(self._keys.last_group(user)))
        return value.decode() if value is not None else None

    # -- history and offline queues ----------------------------------------------------------

    def history_append(self, stream: str, message_id: int, body: dict, size: int, ttl: float, min_id: int) -> None:
        keys = [self._keys.history(stream), self._keys.dropped(stream)]
        args = [message_id, json.dumps(body, ensure_ascii=False), size, int(ttl * 1000), min_id]
        self._read(lambda: self._lane.evalsha(self._history_append, keys, args))

    def history_since(self, streams: list[str], after_id: int, min_id: int) -> tuple[list[dict], bool]:
        pipe = self._redis.pipeline(transaction=False)
        for stream in streams:
            pipe.zrangebyscore(self._keys.history(stream), f"({after_id}", "+inf")
            pipe.get(self._keys.dropped(stream))
        replies = self._read(pipe.execute)
        bodies = [json.loads(raw) for entries in replies[0::2] for raw in entries]
        dropped = max((int(value) for value in replies[1::2] if value is not None), default=0)
        bodies = sorted((b for b in bodies if b["id"] >= min_id), key=lambda body: body["id"])
        return bodies, dropped <= after_id and after_id >= min_id

    def offline_push(self, user: UserKey, message_id: int, body: dict, expire_at_ms: int, size: int) -> None:
        key = self._keys.offline(user)
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(key, {json.dumps([expire_at_ms, body], ensure_ascii=False): message_id})
        pipe.zremrangebyrank(key, 0, -size - 1)
        pipe.pexpireat(key, expire_at_ms, gt=True)
        pipe.pexpireat(key, expire_at_ms, nx=True)
        self._read(pipe.execute)

    def offline_take(self, user: UserKey, now_ms: int) -> list[dict]:
        raw = self._read(lambda: self._offline_take(keys=[self._keys.offline(user)]))
        entries = [json.loads(item) for item in raw]
        return [body for expire_at, body in entries if expire_at > now_ms]

    def _added(self, conn_id: str, group: str, user: UserKey, display_id: UserId) -> tuple[list, list]:
        """Keys and arguments of :data:`PRESENCE_ADD` for one of this process's connections."""
        field = f"{self._instance}|{conn_id}"
        keys = self._entry_keys(self._instance, group, user)
        return keys, [field, json.dumps([user.id, user.type, display_id]), group,
                      json.dumps([conn_id, group, user.id, user.type]), self._instance]

    def _removed(self, instance: str, conn_id: str, group: str, user: UserKey) -> tuple[list, list]:
        """Keys and arguments of :data:`PRESENCE_REMOVE` for a connection of ``instance``."""
        keys = self._entry_keys(instance, group, user)
        return keys, [f"{instance}|{conn_id}", json.dumps([conn_id, group, user.id, user.type]), instance]

    def _entry_keys(self, instance: str, group: str, user: UserKey) -> list[str]:
        keys = self._keys
        return [keys.presence(group), keys.user(user), keys.conns(instance), keys.holders(group)]

    def _split_by_liveness(self, entries: dict[bytes, bytes]) -> tuple[dict, list]:
        """Separate hash entries of live instances from those of dead ones."""
        owners = sorted({field.split(b"|", 1)[0].decode() for field in entries})
        if not owners:
            return {}, []
        flags = self._read(lambda: self._redis.mget([self._keys.alive(o) for o in owners]))
        alive = {o for o, flag in zip(owners, flags, strict=True) if flag is not None}
        live, dead = {}, []
        for field, value in entries.items():
            if field.split(b"|", 1)[0].decode() in alive:
                live[field] = value
            else:
                dead.append(field)
        return live, dead

    def _forget_fields(self, key: str, fields: list) -> None:
        try:
            self._redis.hdel(key, *fields)
        except redis.RedisError:
            pass  # the janitor will try again

    # -- node registry -----------------------------------------------------------------------

    def heartbeat(self, instance: Instance) -> None:
        """On the lane, like tickets: a burst that holds every pooled connection must not hide a node."""
        info = json.dumps({"node": instance.node, "addr": instance.addr, "connections": instance.connections,
                           "state": instance.state, "capacity": instance.capacity, "weight": instance.weight})
        keys = self._keys
        try:
            created = self._lane.evalsha(self._heartbeat, [keys.instances, keys.alive(instance.id), keys.handed,
                                                           keys.seen], [instance.id, info, self._ttl_ms, instance.node])
        except redis.RedisError as exc:
            self._dirty = True
            raise BackendUnavailable(f"heartbeat: {_describe(exc)}") from None
        if created or self._dirty:
            self._replay_presence()

    def live_nodes(self) -> list[Node]:
        raw = self._read(lambda: self._redis.hgetall(self._keys.instances))
        ids = sorted(i.decode() for i in raw)
        flags = self._read(lambda: self._redis.mget([self._keys.alive(i) for i in ids])) if ids else []
        handed, seen = self._read(lambda: self._redis.pipeline(transaction=False).hgetall(self._keys.handed)
                                  .hgetall(self._keys.seen).execute())
        nodes: dict[str, Node] = {}
        reports: dict[str, list[int | None]] = {}
        for instance_id, flag in zip(ids, flags, strict=True):
            if flag is None:
                continue
            info = json.loads(raw[instance_id.encode()])
            nodes[info["node"]] = _merge(nodes.get(info["node"]), info)
            reports.setdefault(info["node"], []).append(seen.get(instance_id.encode()))
        return [dataclasses.replace(node, pending=_pending(int(handed.get(name.encode(), 0)), reports[name]))
                for name, node in nodes.items()]

    def place(self) -> Placement:
        """One script on the lane (one shared, pipelined connection): a burst of tickets costs a few
        round trips and no pooled connections, so it is never refused for want of one."""
        keys = self._keys
        full, encoded = self._read(lambda: self._lane.evalsha(
            self._place, [keys.instances, keys.handed, keys.seen], [self._alive_prefix, salt()]))
        nodes = [Node(name, addr or None, connections, state, capacity, float(weight), pending)
                 for name, addr, connections, state, capacity, weight, pending in json.loads(encoded)]
        return Placement(nodes, int(full))

    def sweep_dead_instances(self) -> int:
        """Delete what dead instances left behind; return how many were swept. Safe to run anywhere."""
        raw = self._read(lambda: self._redis.hgetall(self._keys.instances))
        ids = sorted(i.decode() for i in raw)
        flags = self._read(lambda: self._redis.mget([self._keys.alive(i) for i in ids])) if ids else []
        dead = [i for i, flag in zip(ids, flags, strict=True) if flag is None and i != self._instance]
        for instance_id in dead:
            self._sweep(instance_id)
        return len(dead)

    def _sweep(self, instance_id: str) -> None:
        members = self._read(lambda: self._redis.smembers(self._keys.conns(instance_id)))
        pipe = self._redis.pipeline(transaction=False)
        groups = set()
        for member in members:
            conn_id, group, user_id, user_type = json.loads(member)
            self._presence_remove(*self._removed(instance_id, conn_id, group, UserKey(user_id, user_type)), client=pipe)
            groups.add(group)
        for group in groups:  # also where readers already dropped its entries (they saw it dead)
            pipe.hdel(self._keys.holders(group), instance_id)
        pipe.delete(self._keys.conns(instance_id))
        pipe.hdel(self._keys.instances, instance_id)
        pipe.hdel(self._keys.seen, instance_id)
        self._read(pipe.execute)
        log.info("swept dead instance %s (%d connections)", instance_id, len(members))

    def _replay_presence(self) -> None:
        """Make Redis hold exactly this process's connections (after a Redis restart or outage)."""
        with self._lock:
            mine = dict(self._mine)
        try:
            stored = self._redis.smembers(self._keys.conns(self._instance))
            pipe = self._redis.pipeline(transaction=False)
            groups = set()
            for member in stored:
                conn_id, group, user_id, user_type = json.loads(member)
                groups.add(group)
                if conn_id not in mine:
                    self._presence_remove(*self._removed(self._instance, conn_id, group, UserKey(user_id, user_type)),
                                          client=pipe)
            for conn_id, (group, user, display_id) in mine.items():
                groups.add(group)
                self._presence_add(*self._added(conn_id, group, user, display_id), client=pipe)
            for group in groups:
                self._holders_recount([self._keys.presence(group), self._keys.holders(group)], [self._instance],
                                      client=pipe)
            pipe.execute()
        except redis.RedisError as exc:
            self._dirty = True
            raise BackendUnavailable(f"presence replay: {_describe(exc)}") from None
        if self._dirty and mine:
            log.info("presence replayed to Redis: %d connections", len(mine))
        self._dirty = False

    # -- plumbing ----------------------------------------------------------------------------

    def _write(self, script, keys_and_args: tuple[list, list]) -> None:
        """Run a presence script on the lane; on failure keep the change for the next replay."""
        try:
            self._lane.evalsha(script, *keys_and_args)
        except redis.RedisError as exc:
            log.warning("presence write failed, will replay when Redis is back: %s", exc)
            self._dirty = True

    def _read(self, call):
        try:
            return call()
        except redis.RedisError as exc:
            raise BackendUnavailable(_describe(exc)) from None

    def ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._lane.close()
        self._redis.close()


def _describe(exc: redis.RedisError) -> str:
    """An error for the log: redis-py's "no master" error goes on with whole client reprs."""
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        return f"{str(exc).split(' : ', 1)[0]} (no sentinel answers, or a failover is under way)"
    return str(exc)


def _check_outcome(outcome: bytes) -> None:
    """Turn a message script's refusals into :class:`BackendUnavailable` (the sender is told -14)."""
    if outcome == b"late":
        raise BackendUnavailable("Redis ran the message after its deadline (stalled?): refused, not sent")
    if outcome == b"unreachable":
        raise BackendUnavailable("a process holding a recipient is not subscribed to Redis: not sent")


def _encode(body: dict) -> bytes:
    """Compact UTF-8 JSON; what orjson refuses (lone surrogates, integers beyond 64 bits) is escaped."""
    try:
        return orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(body, separators=(",", ":")).encode()


def _pending(handed: int, seen: list) -> int:
    """Tickets handed to a node since its processes reported, on average (as the placement script counts)."""
    reported = sum(int(value) if value is not None else handed for value in seen) / len(seen)
    return max(0, math.floor(handed - reported + 0.5))


def _merge(node: Node | None, info: dict) -> Node:
    """Add one live instance to its node: connections add up; a node is up if any instance is."""
    capacity, weight = info.get("capacity", 0), info.get("weight", 1.0)
    if node is None:
        return Node(info["node"], info["addr"], info["connections"], info["state"], capacity, weight)
    state = "up" if "up" in (node.state, info["state"]) else info["state"]
    capacity = node.capacity + capacity if node.capacity and capacity else 0  # one unbounded process: unbounded
    return Node(node.name, node.addr or info["addr"], node.connections + info["connections"], state, capacity, weight)
