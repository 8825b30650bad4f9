#!/usr/bin/env python3
"""Benchmark of a Gru cluster on this machine: what the Redis hop costs, and how fast ghosts go.

The script starts everything itself on free loopback ports and stops it all on exit (also on
Ctrl-C, SIGTERM or an error): one ``redis-server`` (``--save "" --appendonly no``) and, per
deployment, gunicorn process groups with one worker each (``gunicorn -c gunicorn.conf.py
wsgi:app``): a ticket service (``GRU_ROLE=ticket``) and nodes (``GRU_ROLE=node``,
``GRU_PUBLIC_ADDR``, one shared ``GRU_SECRET``, ``GRU_REDIS_URL`` and a fresh
``GRU_REDIS_PREFIX``). The comparison is the embedded default: one process, ``GRU_ROLE=all``, no
Redis. Inherited ``GRU_*`` variables are dropped (only ``GRU_LOG_LEVEL`` passes through): every
setting is at its default but the per-connection event rate limit and the per-address limit of
unauthenticated connections, which are lifted (all simulated users come from 127.0.0.1 and the
senders go flat out), and the drain on SIGTERM (0 s, to stop quickly); see ``BENCH_SETTINGS``.
Every node of a deployment gets one idle authenticated user first, as in a cluster in service
(python-socketio subscribes a node to the Redis channel only at its first connection).

Phases (``--only`` picks one; every measurement runs ``--repeat`` times, the table shows medians):

1. **unicast** (``scripts/bench/unicast_pingpong.js``): ``--pairs`` pairs play ping-pong: the
   sender sends a unicast (``msg`` type 0, target {id, type}), the receiver answers with a unicast
   back; ``--round-trips`` round trips in total. Round-trip and one-way latency (send → receive,
   one Node process, one clock), round trips/s, server CPU µs per round trip (utime+stime of all
   gunicorn workers, from /proc) and redis-server CPU µs per round trip. Deployments: 1 node in
   memory; ticket service + 1 node with Redis; ticket service + 3 nodes with both users of each
   pair on node_1 ("same node") or the sender on node_1 and the receiver on node_2 ("cross-node").
2. **broadcast** (``scripts/bench/broadcast_load.js``): one sender on node_1, ``--receivers``
   receivers of its group spread evenly over the nodes, ``--messages`` broadcasts with at most
   ``--window`` msg_results outstanding. Deliveries/s, lost and duplicated (both must be 0),
   latency p50/p99, server CPU µs per delivery. Deployments: 1 node in memory, ticket service +
   1 node with Redis, ticket service + 3 nodes with Redis.
3. **ghost**: ticket service + node_1 + node_2 with the default heartbeat settings. A user is
   authenticated on node_1, a watcher on node_2 asks ``online`` every 100 ms; after a random part
   of a heartbeat interval node_1's whole process group gets SIGKILL. Reported per run and as the
   max: seconds until the user leaves the watcher's online list, until ``GET /ticket`` names node_1
   neither as primary nor as backup, and the liveness TTL node_1 had left in Redis at the kill.
   node_1 is started again between runs.

The load generators share the machine's cores with the servers: the tables show the CPU use of
each kind of process, the whole machine's and what other processes took, so that a CPU-bound
or disturbed figure can be told apart.

Run from the repository root (exit status 1 if a message was lost, duplicated or refused, or a
phase failed; 2 if the bench itself could not run; the default run takes about 2.5 minutes)::

    .venv/bin/python scripts/bench_cluster.py
    .venv/bin/python scripts/bench_cluster.py --only unicast --pairs 1 --round-trips 500
    .venv/bin/python scripts/bench_cluster.py --repeat 1 --json > cluster.json
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import socketio
from bench_core import REPO_ROOT, free_port, machine_info, median_of, wait_for, wait_healthy

BENCH_DIR = REPO_ROOT / "scripts" / "bench"
PINGPONG_JS = BENCH_DIR / "unicast_pingpong.js"
BROADCAST_JS = BENCH_DIR / "broadcast_load.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-cluster-" + secrets.token_hex(16)  # >= 32 characters, shared by every process of a run
SETUP_TIMEOUT = 60.0  # s: tickets + connect + auth of one load run
START_TIMEOUT = 30.0  # s: a gunicorn or redis-server start
STOP_TIMEOUT = 15.0  # s: SIGTERM → exit, then SIGKILL
GHOST_POLL = 0.1  # s between two online / ticket polls
GHOST_LIMIT = 30.0  # s: a ghost still there after this is a failure
BENCH_SETTINGS = {  # what differs from the defaults in every deployment (unknown names are ignored)
    "GRU_DRAIN_SECONDS": "0",  # no drain on SIGTERM: only to stop quickly
    # every simulated user comes from 127.0.0.1 and the senders go flat out: lift the abuse limits
    "GRU_RATE_LIMIT": "100000", "GRU_RATE_BURST": "100000", "GRU_MAX_PENDING_PER_ADDRESS": "100000",
}
DISTURBED_PCT = 20  # % of a core used by other processes during a run that earns a note
PASS_THROUGH = ("GRU_LOG_LEVEL",)  # the only GRU_* variables taken from the environment


def log(text: str) -> None:
    print(f"bench_cluster: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


# --------------------------------------------------------------------------- processes

_STARTED: list = []  # everything with a stop(), in start order
_STOP_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop every process this script started (idempotent; any exit path calls it)."""
    with _STOP_LOCK:
        items = list(reversed(_STARTED))
        _STARTED.clear()
    servers = [item for item in items if isinstance(item, Server)]
    for server in servers:  # SIGTERM them all first: they shut down in parallel
        server.terminate()
    for item in items:
        try:
            item.stop()
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            log(f"could not stop {item!r}: {exc}")


def _gunicorn() -> str:
    for candidate in (REPO_ROOT / ".venv" / "bin" / "gunicorn", Path(sys.executable).with_name("gunicorn")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("gunicorn")
    if not found:
        raise RuntimeError("gunicorn not found: run 'make setup' first")
    return found


def base_env() -> dict[str, str]:
    """The environment without GRU_* settings (but GRU_LOG_LEVEL) or gunicorn overrides."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("GRU_") and k not in PASS_THROUGH) and k != "GUNICORN_CMD_ARGS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class RedisProc:
    """A redis-server without persistence on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run 'make setup-dev' or apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="gru-bench-redis-"))
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--daemonize", "no", "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _STARTED.append(self)
        wait_for(self._pong, START_TIMEOUT, f"redis-server on port {self.port}")

    def _pong(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {self.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self in _STARTED:
            _STARTED.remove(self)

    def __repr__(self) -> str:
        return f"redis-server:{self.port}"


class Server:
    """One gunicorn process group (master + one worker) started by this script."""

    def __init__(self, name: str, env: dict[str, str], public_addr: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = Path(tempfile.mkdtemp(prefix=f"gru-bench-metrics-{name}-"))  # removed by stop()
        full_env = {**base_env(), **env, "GRU_BIND": f"127.0.0.1:{self.port}", "GRU_WORKERS": "1",
                    "GRU_METRICS_DIR": str(self.metrics_dir)}
        if public_addr:
            full_env["GRU_PUBLIC_ADDR"] = self.url
        fd, log_name = tempfile.mkstemp(prefix=f"gru-bench-{name}-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log_file:
            self.proc = subprocess.Popen([_gunicorn(), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=REPO_ROOT,
                                         env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _STARTED.append(self)

    def wait_ready(self) -> None:
        try:
            wait_healthy(self.url, START_TIMEOUT, self.proc)
            wait_for(lambda: bool(self.worker_pids()), START_TIMEOUT, f"a gunicorn worker of {self.name}")
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"{self.name} did not start: {exc}\n--- log of {self.name} ---\n{self.log_tail()}") \
                from None

    def worker_pids(self, children: dict[int, list[int]] | None = None) -> list[int]:
        return (children if children is not None else children_by_parent()).get(self.proc.pid, [])

    def cpu_seconds(self, children: dict[int, list[int]] | None = None) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.worker_pids(children))

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group: a crashed machine, no goodbye."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the master is gone: make sure no worker lingers
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        self.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if self in _STARTED:
            _STARTED.remove(self)

    def __repr__(self) -> str:
        return f"gunicorn {self.name}:{self.port}"


class Deployment:
    """The embedded default (one process, memory) or a ticket service plus N nodes sharing Redis."""

    def __init__(self, label: str, nodes: int, redis: RedisProc | None, prime: bool = True) -> None:
        self.label = label
        self.redis = redis
        self.idle: list[PyUser] = []
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.common = {"GRU_SECRET": SECRET, **BENCH_SETTINGS}
        if redis is None:
            if nodes != 1:
                raise ValueError("without Redis there is exactly one node")
            self.ticket = Server("node_1", {**self.common, "GRU_ROLE": "all", "GRU_NODE_NAME": "node_1"})
            self.nodes = [self.ticket]
        else:
            self.common.update(GRU_REDIS_URL=redis.url, GRU_REDIS_PREFIX=self.prefix)
            self.ticket = Server("ticket", {**self.common, "GRU_ROLE": "ticket", "GRU_NODE_NAME": "ticket"})
            self.nodes = [self.launch_node(f"node_{i + 1}") for i in range(nodes)]
        try:
            for server in self.servers:
                server.wait_ready()
            self.wait_named({n.name for n in self.nodes})
            if prime:
                self.prime()
        except BaseException:
            self.stop()
            raise

    def prime(self) -> None:
        """One idle authenticated user per node for the deployment's lifetime, as in a cluster in service.

        python-socketio subscribes a node to the Redis channel at its first connection: without a
        client, a node would neither receive nor pay for the messages published by the others.
        """
        group = f"idle-{self.prefix}"
        for node in self.nodes:
            self.idle.append(PyUser(node.url, self.ticket_url, f"{group}-{node.name}", 1, group))

    @property
    def servers(self) -> list[Server]:
        return [self.ticket, *(n for n in self.nodes if n is not self.ticket)]

    def launch_node(self, name: str) -> Server:
        """Start a GRU_ROLE=node process (the caller waits for it to be ready)."""
        return Server(name, {**self.common, "GRU_ROLE": "node", "GRU_NODE_NAME": name}, public_addr=True)

    def replace_node(self, index: int) -> Server:
        """Start a node of the same name again (on a new port) after it was killed."""
        old = self.nodes[index]
        old.stop()
        node = self.launch_node(old.name)
        self.nodes[index] = node
        node.wait_ready()
        self.wait_named({node.name})
        return node

    @property
    def ticket_url(self) -> str:
        return self.ticket.url

    @property
    def node_urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def named_nodes(self, user_id: str = "bench-probe") -> set[str]:
        ticket = get_ticket(self.ticket_url, user_id, 1)
        return {ticket["name"], *(b["name"] for b in ticket["backupNodes"])}

    def wait_named(self, names: set[str], timeout: float = 15.0) -> None:
        def named() -> bool:
            try:
                return names <= self.named_nodes()
            except (requests.RequestException, RuntimeError):
                return False
        wait_for(named, timeout, f"ticket naming {sorted(names)}")

    def cpu(self) -> dict:
        children = children_by_parent()
        return {"servers": {s.name: s.cpu_seconds(children) for s in self.servers},
                "redis": self.redis.cpu_seconds() if self.redis else 0.0}

    def stop(self) -> None:
        for user in self.idle:
            user.close()
        self.idle.clear()
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.stop()


def get_ticket(ticket_url: str, user_id: str, user_type: int, timeout: float = 5.0) -> dict:
    """A successful ticket's ``data``; RuntimeError otherwise."""
    response = requests.get(f"{ticket_url}/ticket", timeout=timeout,
                            params={"userType": user_type, "userName": user_id, "userId": user_id, "token1": "bench"})
    if response.status_code != 200:
        raise RuntimeError(f"GET /ticket answered HTTP {response.status_code}: {response.text[:200]}")
    return response.json()["data"]


class NodeScript:
    """A Node load generator as a child process, read line by line with timeouts."""

    def __init__(self, script: Path, config: dict) -> None:
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node not found in PATH: the load generators need Node.js")
        self.name = script.name
        self.proc = subprocess.Popen([node, str(script), json.dumps(config)], cwd=REPO_ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        _STARTED.append(self)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_report(self, timeout: float) -> dict:
        """The next JSON line; raise if none arrives in time or the process ends."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"{self.name} exited (code {self.proc.wait(5)}) without a result")
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.name} said nothing for {timeout:.0f}s")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        if self in _STARTED:
            _STARTED.remove(self)

    def __repr__(self) -> str:
        return f"node {self.name}"


class Meter:
    """CPU over an interval: the deployment's gunicorn workers, redis-server, the load generator,
    this script and the gunicorn masters, and the whole machine (what is left is other people's)."""

    def __init__(self, deployment: Deployment, load_pid: int) -> None:
        self.deployment = deployment
        self.load_pid = load_pid
        self.start, self.start_rest = deployment.cpu(), self._rest()
        self.machine = machine_cpu()
        self.wall = time.perf_counter()

    def _rest(self) -> tuple[float, float]:
        """(load generator, this script + gunicorn masters) CPU seconds."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        own = usage.ru_utime + usage.ru_stime + sum(proc_cpu_seconds(s.proc.pid) for s in self.deployment.servers)
        return proc_cpu_seconds(self.load_pid), own

    def figures(self, units: int, unit: str) -> dict:
        end, rest, machine = self.deployment.cpu(), self._rest(), machine_cpu()
        wall = time.perf_counter() - self.wall
        per_server = {name: end["servers"][name] - self.start["servers"].get(name, 0.0) for name in end["servers"]}
        nodes = [per_server[n.name] for n in self.deployment.nodes]
        server = sum(per_server.values())
        redis = end["redis"] - self.start["redis"]
        busy, total = (machine[0] - self.machine[0]), (machine[1] - self.machine[1])
        load, own = rest[0] - self.start_rest[0], rest[1] - self.start_rest[1]
        busy_cpu = (os.cpu_count() or 1) * wall * busy / total if total else None  # CPU seconds, all cores
        return {
            "server_cpu_s": server,
            f"server_cpu_us_per_{unit}": 1e6 * server / units if units else None,
            f"redis_cpu_us_per_{unit}": 1e6 * redis / units if units and self.deployment.redis else None,
            "server_cpu_pct": 100 * server / wall,
            "max_node_cpu_pct": 100 * max(nodes) / wall,
            "redis_cpu_pct": 100 * redis / wall if self.deployment.redis else None,
            "machine_busy_pct": 100 * busy / total if total else None,
            "load_cpu_pct": 100 * load / wall,
            "bench_cpu_pct": 100 * own / wall,
            "other_cpu_pct": max(0.0, 100 * (busy_cpu - server - redis - load - own) / wall) if busy_cpu else None,
            "server_cpu_pct_by_process": {name: round(100 * cpu / wall, 1) for name, cpu in per_server.items()},
            **{f"cpu_pct_{n.name}": 100 * per_server[n.name] / wall for n in self.deployment.nodes},
        }


# --------------------------------------------------------------------------- phase 1: unicast


def unicast_run(dep: Deployment, sender_url: str, receiver_url: str, args: argparse.Namespace) -> dict:
    config = {"ticketUrl": dep.ticket_url, "senderUrl": sender_url, "receiverUrl": receiver_url,
              "pairs": args.pairs, "roundTrips": args.round_trips, "warmup": 2, "setupTimeout": SETUP_TIMEOUT,
              "runTimeout": args.run_timeout, "waitForGo": True}
    load = NodeScript(PINGPONG_JS, config)
    figures: dict = {}
    try:
        report = load.next_report(SETUP_TIMEOUT + 10)
        if report.get("phase") == "ready":
            meter = Meter(dep, load.proc.pid)
            load.go()
            report = load.next_report(args.run_timeout + 15)
            figures = meter.figures(report.get("roundTrips") or 0, "round_trip")
    finally:
        load.stop()
    rtt, one_way, cpu = report.get("rttMs") or {}, report.get("oneWayMs") or {}, report.get("clientCpuMs") or {}
    duration_s = (report.get("durationMs") or 0) / 1000
    client_pct = 100 * cpu["phase"] / 1000 / duration_s if cpu.get("phase") and duration_s else None
    return {
        "ok": bool(report.get("ok")), "error": report.get("error"),
        "pairs": report.get("pairs"), "round_trips": report.get("roundTrips"), "requested": report.get("requested"),
        "sent": report.get("sent"), "received": report.get("received"), "lost": report.get("lost"),
        "duplicated": report.get("duplicated"), "refused": report.get("refused"),
        "unexpected": report.get("unexpected"), "first_refusal": report.get("firstRefusal"),
        "round_trips_per_s": report.get("roundTripsPerSec"),
        "rtt_p50_ms": rtt.get("p50"), "rtt_p99_ms": rtt.get("p99"), "rtt_max_ms": rtt.get("max"),
        "one_way_p50_ms": one_way.get("p50"), "one_way_p99_ms": one_way.get("p99"),
        "client_cpu_pct": client_pct,
        **figures,
    }


# --------------------------------------------------------------------------- phase 2: broadcast


def broadcast_run(dep: Deployment, args: argparse.Namespace) -> dict:
    config = {"url": dep.ticket_url, "ticketUrl": dep.ticket_url, "nodeUrls": dep.node_urls,
              "senderUrl": dep.node_urls[0], "receivers": args.receivers, "messages": args.messages,
              "window": args.window, "sendTimeout": args.run_timeout, "setupTimeout": SETUP_TIMEOUT,
              "waitForGo": True}
    load = NodeScript(BROADCAST_JS, config)
    figures: dict = {}
    try:
        report = load.next_report(SETUP_TIMEOUT + 10)
        if report.get("phase") == "ready":
            meter = Meter(dep, load.proc.pid)
            load.go()
            report = load.next_report(args.run_timeout + 15)
            figures = meter.figures(report.get("deliveries") or 0, "delivery")
    finally:
        load.stop()
    latency, cpu = report.get("latencyMs") or {}, report.get("clientCpuMs") or {}
    duration_s = (report.get("durationMs") or 0) / 1000
    client_pct = 100 * cpu["phase"] / 1000 / duration_s if cpu.get("phase") and duration_s else None
    return {
        "ok": bool(report.get("ok")), "error": report.get("error"),
        "receivers": report.get("receivers"), "messages": report.get("messages"), "sent": report.get("sent"),
        "refused": report.get("refused"), "first_refusal": report.get("firstRefusal"),
        "deliveries": report.get("deliveries"), "expected": report.get("expected"),
        "lost": report.get("lost"), "duplicated": report.get("duplicated"), "echoed": report.get("echoed"),
        "receivers_per_node": [r["receivers"] for r in report.get("receiversPerNode") or []],
        "deliveries_per_s": report.get("deliveriesPerSec"), "broadcasts_per_s": report.get("broadcastsPerSec"),
        "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"), "max_ms": latency.get("max"),
        "setup_ms": report.get("setupMs"),
        "client_cpu_pct": client_pct,
        **figures,
    }


# --------------------------------------------------------------------------- phase 3: ghost


class PyUser:
    """One python-socketio client, authenticated on a given node, with its events in a queue."""

    def __init__(self, url: str, ticket_url: str, user_id: str, user_type: int, group: str) -> None:
        self.events: queue.Queue = queue.Queue()
        self.sio = socketio.Client(reconnection=False, handle_sigint=False)
        for event in ("auth_result", "online_result"):
            self.sio.on(event, lambda data, event=event: self.events.put((event, data)))
        ticket = get_ticket(ticket_url, user_id, user_type)
        try:
            self.sio.connect(url, transports=["websocket"], wait_timeout=5)
        except socketio.exceptions.ConnectionError as exc:
            raise RuntimeError(f"{user_id} cannot connect to {url}: {exc}") from None
        self.sio.emit("auth", json.dumps({"id": user_id, "name": user_id, "groupId": group, "token1": "bench",
                                          "token2": ticket["token"], "type": user_type}))
        result = self.wait("auth_result", 5)
        if not (isinstance(result, dict) and result.get("success") is True):
            raise RuntimeError(f"auth of {user_id} on {url} refused: {result}")

    def wait(self, event: str, timeout: float):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                name, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if name == event:
                return data
        raise TimeoutError(f"no {event} within {timeout:g}s")

    def online(self, group: str, timeout: float = 2.0) -> list[str] | None:
        """The group's online user ids, or None if there was no (successful) answer."""
        while not self.events.empty():  # answers that came too late for an earlier poll
            self.events.get_nowait()
        self.sio.emit("online", group)
        try:
            answer = self.wait("online_result", timeout)
        except TimeoutError:
            return None
        return [str(u) for u in answer] if isinstance(answer, list) else None

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - the node may be dead already
            pass


def alive_ttl_left(dep: Deployment, node: Server) -> float | None:
    """Seconds left on the node's liveness key in Redis (see gru/backends/redis.py), if it can be read."""
    try:
        import redis
        client = redis.Redis.from_url(dep.redis.url, socket_timeout=2)
        try:
            ttls = [client.pttl(key) for key in client.scan_iter(f"{dep.prefix}:alive:{node.name}:*")]
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - a diagnostic only
        return None
    ttls = [t for t in ttls if t >= 0]
    return max(ttls) / 1000 if ttls else None


def ghost_run(dep: Deployment, index: int, heartbeat_interval: float) -> dict:
    """Kill node_1 (dep.nodes[0]) while a user is on it; time the ghost's removal as node_2 sees it.

    The kill waits a random part of a heartbeat interval first: the time a ghost stays is the
    liveness TTL left at the kill, so a kill at a fixed delay after start would always hit the
    same phase of the heartbeat.
    """
    victim_node, watcher_node = dep.nodes[0], dep.nodes[1]
    group = f"ghost-{uuid.uuid4().hex[:8]}"
    victim_id, watcher_id = f"{group}-victim", f"{group}-watcher"
    victim = watcher = None
    try:
        victim = PyUser(victim_node.url, dep.ticket_url, victim_id, 1, group)
        watcher = PyUser(watcher_node.url, dep.ticket_url, watcher_id, 1, group)
        wait_for(lambda: victim_id in (watcher.online(group) or []), 5, f"{victim_id} online on node_2")
        if victim_node.name not in dep.named_nodes():
            raise RuntimeError(f"GET /ticket does not name {victim_node.name} before the kill")
        user_gone = ticket_gone = None
        polls = errors = 0
        time.sleep(random.uniform(0, heartbeat_interval))
        killed_at = time.monotonic()
        victim_node.kill()
        ttl_left = alive_ttl_left(dep, victim_node)  # read after the kill: no beat can renew it any more
        if ttl_left is not None:
            ttl_left += time.monotonic() - killed_at
        while (user_gone is None or ticket_gone is None) and time.monotonic() - killed_at < GHOST_LIMIT:
            tick = time.monotonic()
            polls += 1
            if user_gone is None:
                members = watcher.online(group)
                if members is None:
                    errors += 1
                elif victim_id not in members:
                    user_gone = time.monotonic() - killed_at
            if ticket_gone is None:
                try:
                    if victim_node.name not in dep.named_nodes():
                        ticket_gone = time.monotonic() - killed_at
                except (requests.RequestException, RuntimeError):
                    errors += 1
            time.sleep(max(0.0, GHOST_POLL - (time.monotonic() - tick)))
        log(f"ghost run {index}: user gone after {_fmt(user_gone)} s, ticket after {_fmt(ticket_gone)} s "
            f"(liveness TTL left at the kill: {_fmt(ttl_left)} s)")
        return {"user_gone_s": user_gone, "ticket_gone_s": ticket_gone, "alive_ttl_left_s": ttl_left,
                "polls": polls, "poll_errors": errors}
    finally:
        for user in (victim, watcher):
            if user is not None:
                user.close()


def _fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "never"


def heartbeat_defaults() -> dict:
    """The heartbeat settings a node runs with when GRU_HEARTBEAT_INTERVAL / GRU_NODE_TTL are unset."""
    try:
        from gru.config import Settings
    except ImportError:
        return {}
    return {"heartbeat_interval_s": Settings.model_fields["heartbeat_interval"].default,
            "node_ttl_s": Settings.model_fields["node_ttl"].default}


# --------------------------------------------------------------------------- scenarios


UNICAST = [  # key, column, deployment, sender node index, receiver node index
    ("memory", "1 node mem", "memory", 0, 0),
    ("redis_1", "1 node Redis", "redis_1", 0, 0),
    ("redis_3_same", "3n same node", "redis_3", 0, 0),
    ("redis_3_cross", "3n cross-node", "redis_3", 0, 1),
]
BROADCAST = [  # key, column, deployment
    ("memory", "1 node mem", "memory"),
    ("redis_1", "1 node Redis", "redis_1"),
    ("redis_3", "3 nodes Redis", "redis_3"),
]
DEPLOYMENTS = [  # key, label, nodes, with Redis
    ("memory", "1 node, embedded default (memory, GRU_ROLE=all)", 1, False),
    ("redis_1", "ticket service + 1 node, Redis", 1, True),
    ("redis_3", "ticket service + 3 nodes, Redis", 3, True),
]


def run_measurements(args: argparse.Namespace, result: dict, redis_box: list) -> None:
    """Unicast and broadcast on each deployment in turn (one deployment up at a time)."""
    for dep_key, label, nodes, with_redis in DEPLOYMENTS:
        unicasts = [u for u in UNICAST if u[2] == dep_key] if args.only in (None, "unicast") else []
        broadcasts = [b for b in BROADCAST if b[2] == dep_key] if args.only in (None, "broadcast") else []
        if not unicasts and not broadcasts:
            continue
        log(f"starting {label}")
        try:
            if with_redis and not redis_box:
                redis_box.append(RedisProc())
            dep = Deployment(label, nodes, redis_box[0] if with_redis else None)
        except (RuntimeError, OSError) as exc:
            result["problems"].append(f"{label}: start failed: {exc}")
            continue
        try:
            for key, column, _, s, r in unicasts:
                entry = result["unicast"].setdefault(key, {"column": column, "label": label, "runs": []})
                entry["where"] = f"sender on {dep.nodes[s].name}, receiver on {dep.nodes[r].name}"
                for i in range(args.repeat):
                    log(f"unicast {column} run {i + 1}/{args.repeat}: {args.pairs} pairs, "
                        f"{args.round_trips} round trips")
                    _attempt(result, f"unicast {column}", entry["runs"],
                             unicast_run, dep, dep.nodes[s].url, dep.nodes[r].url, args)
            for key, column, _ in broadcasts:
                entry = result["broadcast"].setdefault(key, {"column": column, "label": label, "runs": []})
                for i in range(args.repeat):
                    log(f"broadcast {column} run {i + 1}/{args.repeat}: {args.receivers} receivers over "
                        f"{nodes} node(s) x {args.messages} messages")
                    _attempt(result, f"broadcast {column}", entry["runs"], broadcast_run, dep, args)
        finally:
            dep.stop()


def run_ghost(args: argparse.Namespace, result: dict, redis_box: list) -> None:
    label = "ticket service + node_1 + node_2, Redis, default heartbeat"
    log(f"starting {label}")
    try:
        if not redis_box:
            redis_box.append(RedisProc())
        dep = Deployment(label, 2, redis_box[0], prime=False)
    except (RuntimeError, OSError) as exc:
        result["problems"].append(f"ghost: start failed: {exc}")
        return
    runs = result["ghost"]["runs"]
    interval = result["ghost"]["heartbeat"].get("heartbeat_interval_s", 2.0)
    try:
        for i in range(args.repeat):
            if i:
                dep.replace_node(0)  # node_1 again, on a new port
            log(f"ghost run {i + 1}/{args.repeat}: SIGKILL of node_1's process group")
            _attempt(result, "ghost", runs, ghost_run, dep, i + 1, interval)
    except (RuntimeError, OSError) as exc:
        result["problems"].append(f"ghost: restarting node_1 failed: {exc}")
    finally:
        dep.stop()
    for key in ("user_gone_s", "ticket_gone_s", "alive_ttl_left_s"):
        values = [run[key] for run in runs if run.get(key) is not None]
        result["ghost"].setdefault("max", {})[key] = max(values) if values else None


def _attempt(result: dict, what: str, runs: list, action, *action_args) -> None:
    """Run one measurement; a failure becomes a problem of the report, not the end of the bench."""
    try:
        runs.append(action(*action_args))
    except (RuntimeError, OSError) as exc:  # TimeoutError is an OSError
        result["problems"].append(f"{what}: run {len(runs) + 1} failed: {exc}")


# --------------------------------------------------------------------------- report


UNICAST_ROWS = [
    ("round trips/s", "round_trips_per_s", "{:.0f}"),
    ("round trip p50 ms", "rtt_p50_ms", "{:.2f}"),
    ("round trip p99 ms", "rtt_p99_ms", "{:.2f}"),
    ("one-way p50 ms", "one_way_p50_ms", "{:.2f}"),
    ("one-way p99 ms", "one_way_p99_ms", "{:.2f}"),
    ("round trips done", "round_trips", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("duplicated", "duplicated", "{:.0f}"),
    ("server CPU µs / round trip", "server_cpu_us_per_round_trip", "{:.0f}"),
    ("redis CPU µs / round trip", "redis_cpu_us_per_round_trip", "{:.0f}"),
    ("server CPU % (all workers)", "server_cpu_pct", "{:.0f}"),
    ("CPU % node_1/node_2/node_3", "node_cpu_pcts", "{}"),
    ("redis CPU %", "redis_cpu_pct", "{:.0f}"),
    ("load generator (Node) CPU %", "load_cpu_pct", "{:.0f}"),
    ("machine busy % (all cores)", "machine_busy_pct", "{:.0f}"),
    ("other processes CPU %", "other_cpu_pct", "{:.0f}"),
]
BROADCAST_ROWS = [
    ("deliveries/s", "deliveries_per_s", "{:.0f}"),
    ("broadcasts/s", "broadcasts_per_s", "{:.0f}"),
    ("deliveries received", "deliveries", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("duplicated", "duplicated", "{:.0f}"),
    ("latency p50 ms", "p50_ms", "{:.1f}"),
    ("latency p99 ms", "p99_ms", "{:.1f}"),
    ("server CPU µs / delivery", "server_cpu_us_per_delivery", "{:.1f}"),
    ("redis CPU µs / delivery", "redis_cpu_us_per_delivery", "{:.2f}"),
    ("server CPU % (all workers)", "server_cpu_pct", "{:.0f}"),
    ("CPU % node_1/node_2/node_3", "node_cpu_pcts", "{}"),
    ("redis CPU %", "redis_cpu_pct", "{:.0f}"),
    ("load generator (Node) CPU %", "load_cpu_pct", "{:.0f}"),
    ("machine busy % (all cores)", "machine_busy_pct", "{:.0f}"),
    ("other processes CPU %", "other_cpu_pct", "{:.0f}"),
    ("setup ms (tickets+auth)", "setup_ms", "{:.0f}"),
]


def _cell(value: object, fmt: str) -> str:
    if isinstance(value, str):
        return value
    return fmt.format(value) if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def node_cpu_pcts(figures: dict) -> str | None:
    """The nodes' CPU %, e.g. "62/60/8" (from the cpu_pct_node_N figures)."""
    keys = sorted((k for k in figures if k.startswith("cpu_pct_node_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    return "/".join(f"{figures[k]:.0f}" for k in keys) if keys else None


def table(title: str, rows: list[tuple[str, str, str]], columns: list[tuple[str, dict]]) -> str:
    width = max(len(label) for label, _, _ in [*rows, (title, "", "")])
    cell = max(12, *(len(name) for name, _ in columns))
    lines = [f"{title:<{width}}  " + "  ".join(f"{name:>{cell}}" for name, _ in columns)]
    for label, key, fmt in rows:
        if all(not isinstance(data.get(key), int | float | str) for _, data in columns):
            continue
        lines.append(f"{label:<{width}}  " + "  ".join(f"{_cell(data.get(key), fmt):>{cell}}" for _, data in columns))
    return "\n".join(lines)


def print_report(result: dict) -> None:
    machine, config = result["machine"], result["config"]
    print(f"machine: {machine['cpus']} CPU(s), {machine['cpu_model'] or 'unknown model'}, "
          f"Python {machine['python']}, Node {machine['node']}; one gunicorn worker per process; "
          f"machine {machine.get('busy_before_pct', 0):.0f}% busy before the bench")
    stat = "median of" if config["repeat"] > 1 else "one run of"
    print()
    if result["unicast"]:
        print(f"unicast ping-pong: {config['pairs']} pairs, {config['round_trips']} round trips; {stat} "
              f"{config['repeat']}; server CPU = all gunicorn workers (a round trip is 2 unicasts)")
        for entry in result["unicast"].values():
            print(f"  {entry['column']:<13} {entry['label']}; {entry.get('where', '')}")
        print(table("unicast", UNICAST_ROWS, [(e["column"], e["median"]) for e in result["unicast"].values()]))
        print()
    if result["broadcast"]:
        print(f"broadcast: 1 sender on node_1, {config['receivers']} receivers spread evenly over the nodes, "
              f"{config['messages']} messages, window {config['window']}; {stat} {config['repeat']}")
        print(table("broadcast", BROADCAST_ROWS, [(e["column"], e["median"]) for e in result["broadcast"].values()]))
        print()
    ghost = result["ghost"]
    if ghost["runs"] or ghost.get("max"):
        hb = ghost.get("heartbeat") or {}
        print(f"ghost removal after SIGKILL of node_1 (heartbeat every {hb.get('heartbeat_interval_s', '?')} s, "
              f"node TTL {hb.get('node_ttl_s', '?')} s: the defaults; polled every {GHOST_POLL * 1000:.0f} ms)")
        columns = [(f"run {i + 1}", run) for i, run in enumerate(ghost["runs"])]
        columns.append(("max", ghost.get("max") or {}))
        print(table("ghost, seconds after the kill", [
            ("user gone from online list", "user_gone_s", "{:.2f}"),
            ("GET /ticket no longer names it", "ticket_gone_s", "{:.2f}"),
            ("(liveness TTL left at the kill)", "alive_ttl_left_s", "{:.2f}"),
        ], columns))
        print()
    others = [run.get("other_cpu_pct") or 0 for phase in ("unicast", "broadcast")
              for entry in result[phase].values() for run in entry["runs"]]
    if others and max(others) > DISTURBED_PCT:
        print(f"NOTE: other processes used up to {max(others):.0f}% of a core during a run: "
              f"figures are disturbed (see 'other processes CPU %')")
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print("OK" if result["ok"] else "FAILED")


def problems_of(result: dict) -> list[str]:
    problems = []
    for phase in ("unicast", "broadcast"):
        for entry in result[phase].values():
            if not entry["runs"]:
                problems.append(f"{phase} {entry['column']}: no successful run")
            for i, run in enumerate(entry["runs"], 1):
                where = f"{phase} {entry['column']} run {i}"
                counts = {k: run.get(k) for k in ("lost", "duplicated", "refused", "echoed", "unexpected")}
                if any(counts.values()):
                    refusal = f" (first refusal: {run['first_refusal']})" if run.get("first_refusal") else ""
                    problems.append(f"{where}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + refusal)
                if run.get("error"):
                    problems.append(f"{where}: {str(run['error']).strip()}")
                elif not run.get("ok"):
                    problems.append(f"{where}: not ok")
    for i, run in enumerate(result["ghost"]["runs"], 1):
        for key, what in (("user_gone_s", "the user stayed online"), ("ticket_gone_s", "tickets still name node_1")):
            if run.get(key) is None:
                problems.append(f"ghost run {i}: {what} {GHOST_LIMIT:.0f}s after the kill")
    return problems


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pairs", type=int, default=50, help="unicast sender/receiver pairs playing ping-pong")
    parser.add_argument("--round-trips", type=int, default=2000, help="unicast round trips per run, all pairs together")
    parser.add_argument("--receivers", type=int, default=300, help="broadcast receivers, spread over the nodes")
    parser.add_argument("--messages", type=int, default=300, help="broadcasts per run")
    parser.add_argument("--window", type=int, default=20, help="unacknowledged broadcast msg_results allowed")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of every measurement (table: median); ghost: kills (table: each and the max)")
    parser.add_argument("--run-timeout", type=float, default=60.0, help="time limit of one measured run, s")
    parser.add_argument("--only", choices=["unicast", "broadcast", "ghost"], help="run one phase only")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    args = parser.parse_args(argv)
    for name in ("pairs", "round_trips", "receivers", "messages", "window", "repeat", "run_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def background_busy_pct(seconds: float = 1.0) -> float:
    """How busy all cores are before the bench starts anything (other people's work disturbs it)."""
    before = machine_cpu()
    time.sleep(seconds)
    after = machine_cpu()
    total = after[1] - before[1]
    return 100 * (after[0] - before[0]) / total if total else 0.0


def run(args: argparse.Namespace) -> dict:
    result = {"machine": machine_info(),
              "config": {"pairs": args.pairs, "round_trips": args.round_trips, "receivers": args.receivers,
                         "messages": args.messages, "window": args.window, "repeat": args.repeat,
                         "only": args.only},
              "unicast": {}, "broadcast": {}, "ghost": {"runs": [], "heartbeat": heartbeat_defaults()},
              "problems": []}
    redis_box: list[RedisProc] = []  # one redis-server for every Redis deployment (fresh key prefix each)
    result["machine"]["busy_before_pct"] = background_busy_pct()
    if result["machine"]["busy_before_pct"] > 15:
        log(f"the machine is already {result['machine']['busy_before_pct']:.0f}% busy: figures will be disturbed")
    began = time.monotonic()
    try:
        if args.only != "ghost":
            run_measurements(args, result, redis_box)
        if args.only in (None, "ghost"):
            run_ghost(args, result, redis_box)
    finally:
        stop_all()
    for phase in ("unicast", "broadcast"):
        for entry in result[phase].values():
            entry["median"] = median_of(entry["runs"]) if entry["runs"] else {}
            entry["median"]["node_cpu_pcts"] = node_cpu_pcts(entry["median"])
    result["seconds"] = time.monotonic() - began
    result["problems"] += problems_of(result)
    result["ok"] = not result["problems"]
    return result


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the processes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        result = run(args)
    except KeyboardInterrupt:
        log("interrupted: every process started was stopped")
        return 130
    except (RuntimeError, OSError) as exc:
        log(f"FAILED: {exc}")
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    log(f"done in {result['seconds']:.0f}s")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
