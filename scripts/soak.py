#!/usr/bin/env python3
"""Soak test of Gru: steady classroom traffic for a while; nothing may be lost, doubled or reordered.

``--connections`` socket.io clients (default 200) in ``--groups`` groups (default 10), each group
with one teacher and students, exchange traffic for ``--seconds`` (default 60): broadcasts at
``--broadcast-rate`` per second in total (default 50) and unicasts to a classmate at
``--unicast-rate`` per second (default 20), each from a random member. The clients live in one
Node process (``scripts/bench/soak_load.js``, socket.io-client from the repository's
node_modules), which tracks every message by a unique content tag and by its server id. This
script starts the server, drives the generator, samples the server's memory and CPU from /proc
and summarises:

* lost, duplicated and out-of-order deliveries (out of order: a receiver got a message from one
  sender after a later one from the same sender), in total and per receiver; also messages
  delivered to the wrong receiver, with the wrong id or sender, refused or unanswered sends and
  dropped connections;
* delivery latency p50/p90/p99/max (send to receive, one process, one clock);
* the RSS of every server process group's workers over time (every ``--sample-every`` seconds)
  and the CPU seconds they used during setup and during the traffic;
* tracebacks in the server logs.

Servers (all on free loopback ports, stopped on exit, also on Ctrl-C or SIGTERM):

* default: the embedded default, one gunicorn (``gunicorn -c gunicorn.conf.py wsgi:app``, one
  worker, state in memory);
* ``--redis``: a ``redis-server`` and a cluster of a ticket service (``GRU_ROLE=ticket``) and two
  nodes (``GRU_ROLE=node``) sharing it; connections alternate between the two nodes, so most
  deliveries cross nodes through Redis;
* ``--url URL``: an existing deployment (tickets from URL, each client connects to the node its
  ticket names); no memory or CPU figures then.

``--hostile`` (one node only) adds hostile and slow clients (``scripts/hostile.py``: bad polling
POSTs, binary attachment floods, Engine.IO-only sessions, idle and slowloris TCP connections, a
reader that stops reading, overlapping polls) attacking the node from other loopback addresses
during the traffic. The summary then also has the attack's counters and the worker's open files
before, during and after; it fails if the node still held an attempt when it was checked, or if
open files did not return to their idle level after the attack, or RSS to its level before it
(the attack starts once a quarter of the traffic time has passed, so the class's own memory is
already in that level).

Inherited ``GRU_*`` variables are not passed to the servers (only ``GRU_LOG_LEVEL``), so the
figures are those of the default settings.

Exit status: 0 if nothing was lost, duplicated, reordered, misdelivered, refused or dropped and
the servers logged no traceback; 1 otherwise; 2 if the soak itself could not run.

    .venv/bin/python scripts/soak.py                          # 200 connections, 60 s
    .venv/bin/python scripts/soak.py --redis --json > soak.json
    .venv/bin/python scripts/soak.py --connections 2000 --seconds 600
    .venv/bin/python scripts/soak.py --hostile --seconds 180
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import click
import hostile as hostile_clients

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_JS = REPO_ROOT / "scripts" / "bench" / "soak_load.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
START_TIMEOUT = 30.0  # s: one gunicorn or redis-server start
STOP_TIMEOUT = 15.0  # s: SIGTERM -> exit, then SIGKILL
RESULT_GRACE = 60.0  # s beyond seconds + drain for the generator's result line
PASS_THROUGH = ("GRU_LOG_LEVEL",)  # the only GRU_* variables taken from the environment
FILES_SLACK = 4  # open files above the idle count still taken as "back to idle" (log rotation, a late poll)
RSS_SLACK_MB = 15.0  # RSS above its level before the attack still taken as "back": glibc keeps heap pages
                     # freed by the attack's large buffers (1 MB bodies, 500 KB frames) until it trims
PLATEAU_SLACK_MB = 5.0  # growth allowed over the second half of the attack: more than that is a leak
DEFAULT_HISTORY_SIZE = 200  # GRU_HISTORY_SIZE: messages kept per group for recovery
ATTACK_DELAY = 0.25  # the attack starts after this share of the traffic time: the class is warm by then
PROBLEM_KEYS = ("lost", "duplicated", "outOfOrder", "misdelivered", "idMismatch", "wrongSender", "refused",
                "unanswered", "disconnects")


def log(text: str) -> None:
    print(f"soak: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """The direct children of a process, from one scan of /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def rss_mb(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * PAGE_KB / 1024


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# --------------------------------------------------------------------------- processes

_STARTED: list = []
_STOP_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop everything this script started, newest first (idempotent)."""
    with _STOP_LOCK:
        items = list(reversed(_STARTED))
        _STARTED.clear()
    for item in items:
        if isinstance(item, Server):
            item.terminate()  # in parallel
    for item in items:
        try:
            item.stop()
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"could not stop {item!r}: {exc}")


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("GRU_") and k not in PASS_THROUGH) and k != "GUNICORN_CMD_ARGS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def gunicorn_path() -> str:
    for candidate in (REPO_ROOT / ".venv" / "bin" / "gunicorn", Path(sys.executable).with_name("gunicorn")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("gunicorn")
    if not found:
        raise RuntimeError("gunicorn not found: run 'make setup' first")
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)


class RedisProc:
    """A redis-server without persistence on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.name = "redis"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = Path(tempfile.mkdtemp(prefix="gru-soak-redis-"))
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

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"redis-server:{self.port}"


class Server:
    """One gunicorn process group (a master and one worker) started by this script."""

    def __init__(self, name: str, env: dict[str, str], public_addr: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**base_env(), **env, "GRU_BIND": f"127.0.0.1:{self.port}", "GRU_WORKERS": "1"}
        if public_addr:
            full_env["GRU_PUBLIC_ADDR"] = self.url
        fd, log_name = tempfile.mkstemp(prefix=f"gru-soak-{name}-", suffix=".log")
        self.log_path = Path(log_name)
        self.keep_log = False
        with os.fdopen(fd, "wb") as log_file:
            self.proc = subprocess.Popen([gunicorn_path(), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=REPO_ROOT,
                                         env=full_env, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _STARTED.append(self)

    def wait_ready(self) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1.0):
                    return True
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"{self.url}/healthz answered HTTP {exc.code}") from None
            except OSError:
                return False

        try:
            wait_for(healthy, START_TIMEOUT, f"{self.name} answering /healthz")
            wait_for(lambda: bool(self.pids()), START_TIMEOUT, f"a gunicorn worker of {self.name}")
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"{self.name} did not start: {exc}\n--- log of {self.name} ---\n{self.log_tail()}") \
                from None

    def pids(self) -> list[int]:
        """The worker processes (where the connections and the memory are)."""
        return children_of(self.proc.pid) if self.proc.poll() is None else []

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

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
            os.killpg(self.proc.pid, signal.SIGKILL)  # no worker may outlive its master
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)
        if not self.keep_log:
            self.log_path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"gunicorn {self.name}:{self.port}"


class Deployment:
    """What the soak runs against: its own servers, or an existing URL."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.redis: RedisProc | None = None
        self.servers: list[Server] = []
        self.node_urls: list[str] | None = None
        if args.url:
            self.ticket_url = args.url.rstrip("/")
            self.label = f"existing deployment at {self.ticket_url}"
            return
        common = {"GRU_SECRET": "soak-" + secrets.token_hex(16), "GRU_DRAIN_SECONDS": "0"}
        if args.hostile:
            common.update(GRU_AUTH_TIMEOUT=f"{args.auth_timeout:g}", GRU_HEADER_TIMEOUT=f"{args.header_timeout:g}")
        if args.redis:
            self.redis = RedisProc()
            common.update(GRU_REDIS_URL=self.redis.url, GRU_REDIS_PREFIX=f"soak{uuid.uuid4().hex[:8]}")
            ticket = Server("ticket", {**common, "GRU_ROLE": "ticket", "GRU_NODE_NAME": "ticket"})
            nodes = [Server(name, {**common, "GRU_ROLE": "node", "GRU_NODE_NAME": name}, public_addr=True)
                     for name in ("node_1", "node_2")]
            self.servers = [ticket, *nodes]
            self.node_urls = [node.url for node in nodes]
            self.label = "ticket service + node_1 + node_2 sharing Redis"
        else:
            self.servers = [Server("node_1", {**common, "GRU_ROLE": "all", "GRU_NODE_NAME": "node_1"})]
            self.label = "embedded default (one process, memory)"
        self.ticket_url = self.servers[0].url
        for server in self.servers:
            server.wait_ready()
        if args.redis:
            wait_for(lambda: {"node_1", "node_2"} <= self.named_nodes(), START_TIMEOUT, "tickets naming both nodes")

    def named_nodes(self) -> set[str]:
        query = urllib.parse.urlencode({"userType": 1, "userName": "probe", "userId": "soak-probe", "token1": "soak"})
        try:
            with urllib.request.urlopen(f"{self.ticket_url}/ticket?{query}", timeout=5) as response:
                data = json.load(response)["data"]
        except (OSError, ValueError, KeyError):
            return set()
        return {data["name"], *(b["name"] for b in data["backupNodes"])}

    def measured(self) -> list:
        """The process groups whose memory and CPU are sampled."""
        return [*self.servers, *([self.redis] if self.redis else [])]

    def sample_rss(self) -> dict[str, float]:
        return {item.name: sum(rss_mb(pid) for pid in item.pids()) for item in self.measured()}

    def sample_files(self) -> dict[str, int]:
        return {server.name: sum(open_files(pid) for pid in server.pids()) for server in self.servers}

    def cpu(self) -> dict[str, float]:
        return {item.name: sum(cpu_seconds(pid) for pid in item.pids()) for item in self.measured()}

    def tracebacks(self) -> dict[str, int]:
        return {server.name: server.log_text().count("Traceback") for server in self.servers}

    def keep_logs(self) -> list[str]:
        for server in self.servers:
            server.keep_log = True
        return [str(server.log_path) for server in self.servers]


# --------------------------------------------------------------------------- the load generator


class Generator:
    """soak_load.js as a child process; its stdout read line by line with timeouts."""

    def __init__(self, config: dict) -> None:
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node not found in PATH: the soak needs Node.js")
        if not (REPO_ROOT / "node_modules" / "socket.io-client").is_dir():
            raise RuntimeError(f"{REPO_ROOT / 'node_modules' / 'socket.io-client'} is missing: run npm ci")
        self.proc = subprocess.Popen([node, str(LOAD_JS), json.dumps(config)], cwd=REPO_ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        _STARTED.append(self)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, timeout: float) -> dict | None:
        """The next JSON line, or None if none came within ``timeout``; raises if the process ended."""
        try:
            line = self.lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if line is None:
            raise RuntimeError(f"soak_load.js exited (code {self.proc.wait(5)}) without a result")
        try:
            return json.loads(line)
        except ValueError:
            return None

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __repr__(self) -> str:
        return "soak_load.js"


class Progress:
    """A click progress bar on a terminal, a progress line every few seconds otherwise."""

    def __init__(self, seconds: float, every: float) -> None:
        self.seconds = seconds
        self.every = every
        self.shown = 0
        self.last_line = 0.0
        self.bar = None
        if sys.stderr.isatty():
            self.bar = click.progressbar(length=int(seconds), label="soak", file=sys.stderr, show_pos=True)
            self.bar.__enter__()

    def update(self, report: dict, rss_total: float | None) -> None:
        elapsed = min(int(report.get("elapsedS") or 0), int(self.seconds))
        if self.bar is not None:
            self.bar.update(elapsed - self.shown)
            self.shown = elapsed
            return
        now = time.monotonic()
        if now - self.last_line >= self.every:
            self.last_line = now
            rss = f", server RSS {rss_total:.0f} MiB" if rss_total is not None else ""
            log(f"{report.get('stage')} {report.get('elapsedS', 0):.0f}/{self.seconds:g}s: sent {report.get('sent')}, "
                f"delivered {report.get('delivered')}/{report.get('expected')}, refused {report.get('refused')}, "
                f"disconnects {report.get('disconnects')}{rss}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict:
    deployment = Deployment(args)
    log(f"servers: {deployment.label}")
    config = {"ticketUrl": deployment.ticket_url, "nodeUrls": deployment.node_urls,
              "connections": args.connections, "groups": args.groups, "seconds": args.seconds,
              "broadcastRate": args.broadcast_rate, "unicastRate": args.unicast_rate, "seed": args.seed,
              "setupTimeout": args.setup_timeout, "drainTimeout": args.drain_timeout, "waitForGo": True}
    own = bool(deployment.servers)
    hostile = None
    generator = Generator(config)
    samples: list[dict] = []
    began = time.monotonic()

    def sample(stage: str) -> None:
        if own:
            rss = deployment.sample_rss()
            samples.append({"t": round(time.monotonic() - began, 1), "stage": stage,
                            "rss_mb": {k: round(v, 1) for k, v in rss.items()},
                            "open_files": deployment.sample_files()})

    sample("idle")
    cpu_start = deployment.cpu() if own else {}
    # setup: tickets, connections, auth
    setup_deadline = time.monotonic() + args.setup_timeout + 15
    report = None
    while time.monotonic() < setup_deadline:
        report = generator.next_line(min(args.sample_every, setup_deadline - time.monotonic()))
        if report and report.get("phase") in ("ready", "result"):
            break
    if not report or report.get("phase") not in ("ready", "result"):
        raise RuntimeError(f"soak_load.js did not get {args.connections} connections ready within "
                           f"{args.setup_timeout:.0f}s")
    result = report if report.get("phase") == "result" else None
    cpu_ready = deployment.cpu() if own else {}
    if result is None:
        sample("ready")
        log(f"{args.connections} connections authenticated in {report.get('setupMs', 0) / 1000:.1f}s; traffic starts")
        generator.go()
        attack = None
        attack_at = time.monotonic() + args.seconds * ATTACK_DELAY
        progress = Progress(args.seconds, args.sample_every)
        next_sample = time.monotonic() + args.sample_every
        deadline = time.monotonic() + args.seconds + args.drain_timeout + RESULT_GRACE
        try:
            while time.monotonic() < deadline:
                report = generator.next_line(min(0.5, max(0.0, next_sample - time.monotonic())))
                if time.monotonic() >= next_sample:
                    sample("traffic" if attack is None else "attack")
                    next_sample += args.sample_every
                if args.hostile and attack is None and time.monotonic() >= attack_at:
                    sample("pre-attack")
                    attack = start_attack(args, deployment)
                if report is None:
                    continue
                if report.get("phase") == "progress":
                    last_rss = sum(samples[-1]["rss_mb"].values()) if own and samples else None
                    progress.update(report, last_rss)
                elif report.get("phase") == "result":
                    result = report
                    break
        finally:
            progress.close()
            if attack is not None:
                hostile = attack.stop()
        if result is None:
            raise RuntimeError(f"soak_load.js gave no result within {args.seconds + args.drain_timeout + RESULT_GRACE:.0f}s")
    cpu_end = deployment.cpu() if own else {}
    sample("end")
    generator.stop()
    if args.hostile:
        settle(deployment, samples[0]["open_files"], args.settle_timeout)
        sample("after")
    summary = summarise(args, deployment, result, samples, cpu_start, cpu_ready, cpu_end)
    if args.hostile:
        judge_hostile(summary, hostile, samples)
    return summary


def start_attack(args: argparse.Namespace, deployment: Deployment):
    """The hostile clients of ``--hostile``, attacking the one node while the class works."""
    if not args.hostile:
        return None
    node = deployment.servers[0]
    attack = hostile_clients.Attack(hostile_clients.Target(node.url, deployment.ticket_url, args.auth_timeout,
                                                           args.header_timeout), tuple(args.attacks.split(",")))
    attack.start()
    log(f"hostile clients attacking {node.url}: {', '.join(attack.stats)}")
    return attack


def settle(deployment: Deployment, idle_files: dict[str, int], timeout: float) -> None:
    """Wait (bounded) until the workers hold no more open files than when idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = deployment.sample_files()
        if all(files.get(name, 0) <= count + FILES_SLACK for name, count in idle_files.items()):
            return
        time.sleep(0.5)


def history_allowance_mb(hostile: dict) -> float:
    """The memory the slow reader's group may keep by design: a full history of large broadcasts."""
    if "slow_reader" not in hostile["stats"]:
        return 0.0
    return DEFAULT_HISTORY_SIZE * hostile_clients.SLOW_READER_CONTENT / (1024 * 1024)


def judge_hostile(summary: dict, hostile: dict, samples: list[dict]) -> None:
    """The attack's figures, and problems where the node held what it should have let go."""
    summary["hostile"] = hostile
    for name, stats in hostile["stats"].items():
        if stats.get("held"):
            summary["problems"].append(f"hostile {name}: the node still held {stats['held']} attempt(s)")
        if not stats.get("attempts"):
            summary["problems"].append(f"hostile {name}: made no attempt ({hostile['last_errors'].get(name)})")
    idle, after = samples[0], samples[-1]
    before = next((s for s in samples if s["stage"] == "pre-attack"), idle)
    for name, count in idle["open_files"].items():
        if after["open_files"].get(name, 0) > count + FILES_SLACK:
            summary["problems"].append(f"{name}: {after['open_files'][name]} open files after the attack, "
                                       f"{count} when idle")
        if after["rss_mb"].get(name, 0) > before["rss_mb"][name] + RSS_SLACK_MB + history_allowance_mb(hostile):
            summary["problems"].append(f"{name}: RSS {after['rss_mb'][name]} MiB after the attack, "
                                       f"{before['rss_mb'][name]} MiB before it")
    during = [s for s in samples if s["stage"] == "attack"]
    if len(during) >= 4:
        middle, last = during[len(during) // 2], during[-1]
        for name, mb in last["rss_mb"].items():
            if mb > middle["rss_mb"][name] + PLATEAU_SLACK_MB:
                summary["problems"].append(f"{name}: RSS still growing in the second half of the attack "
                                           f"({middle['rss_mb'][name]} -> {mb} MiB): a leak")
    summary["ok"] = not summary["problems"]


def summarise(args: argparse.Namespace, deployment: Deployment, result: dict, samples: list[dict],
              cpu_start: dict, cpu_ready: dict, cpu_end: dict) -> dict:
    totals = result.get("totals") or {}
    per_receiver = result.get("perReceiver") or []
    problems = []
    if result.get("error"):
        problems.append(f"load generator: {result['error']}")
    for key in PROBLEM_KEYS:
        if totals.get(key):
            problems.append(f"{key}: {totals[key]}")
    if not totals:
        problems.append("no totals from the load generator")
    tracebacks = deployment.tracebacks()
    for name, count in tracebacks.items():
        if count:
            problems.append(f"{name} logged {count} traceback(s)")
    if result.get("firstRefusal"):
        problems.append(f"first refusal: {json.dumps(result['firstRefusal'])}")
    cpu = {name: {"setup_s": round(cpu_ready.get(name, 0) - cpu_start.get(name, 0), 2),
                  "traffic_s": round(cpu_end.get(name, 0) - cpu_ready.get(name, 0), 2)} for name in cpu_end}
    summary = {
        "ok": not problems,
        "problems": problems,
        "config": {"connections": args.connections, "groups": args.groups, "seconds": args.seconds,
                   "broadcast_rate": args.broadcast_rate, "unicast_rate": args.unicast_rate, "seed": args.seed,
                   "deployment": deployment.label, "redis": bool(args.redis), "url": args.url},
        "totals": {
            "connections": totals.get("connections"), "sent_broadcasts": totals.get("sentBroadcasts"),
            "sent_unicasts": totals.get("sentUnicasts"), "accepted": totals.get("accepted"),
            "refused": totals.get("refused"), "unanswered": totals.get("unanswered"),
            "expected_deliveries": totals.get("expectedDeliveries"), "delivered": totals.get("delivered"),
            "lost": totals.get("lost"), "duplicated": totals.get("duplicated"),
            "out_of_order": totals.get("outOfOrder"), "misdelivered": totals.get("misdelivered"),
            "id_mismatch": totals.get("idMismatch"), "wrong_sender": totals.get("wrongSender"),
            "foreign": totals.get("foreign"), "disconnects": totals.get("disconnects"),
        },
        "receivers_with_problems": [r for r in per_receiver if r["lost"] or r["duplicated"] or r["outOfOrder"]
                                    or r["misdelivered"] or r["disconnected"]],
        "latency_ms": result.get("latencyMs") or {},
        "timing_s": {"setup": (result.get("setupMs") or 0) / 1000, "sending": result.get("sendingS"),
                     "drain": result.get("drainS")},
        "connections_per_node": result.get("connectionsPerNode"),
        "rss_mb": samples,
        "cpu_s": cpu,
        "client_cpu_ms": result.get("clientCpuMs"),
        "server_tracebacks": tracebacks,
        "per_receiver": per_receiver,
    }
    if problems and deployment.servers:
        summary["server_logs"] = deployment.keep_logs()
    return summary


# --------------------------------------------------------------------------- report


def print_report(summary: dict) -> None:
    config, totals = summary["config"], summary["totals"]
    print(f"soak: {config['connections']} connections in {config['groups']} groups, {config['seconds']:g}s, "
          f"{config['broadcast_rate']:g} broadcasts/s + {config['unicast_rate']:g} unicasts/s; {config['deployment']}")
    if summary.get("connections_per_node"):
        print("connections per node: " + ", ".join(f"{url} {n}" for url, n in summary["connections_per_node"].items()))
    timing = summary["timing_s"]
    print(f"setup {timing['setup']:.1f}s, sending {timing['sending'] or 0:.1f}s, drain {timing['drain'] or 0:.2f}s")
    print()
    rows = [("sent broadcasts", "sent_broadcasts"), ("sent unicasts", "sent_unicasts"), ("accepted", "accepted"),
            ("refused", "refused"), ("unanswered", "unanswered"), ("expected deliveries", "expected_deliveries"),
            ("delivered", "delivered"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("out of order", "out_of_order"), ("misdelivered", "misdelivered"), ("id mismatch", "id_mismatch"),
            ("wrong sender", "wrong_sender"), ("disconnects", "disconnects")]
    for label, key in rows:
        print(f"  {label:<22} {totals.get(key) if totals.get(key) is not None else '-':>10}")
    lat = summary["latency_ms"]
    print(f"  {'latency ms p50/p90/p99/max':<22} {lat.get('p50')} / {lat.get('p90')} / {lat.get('p99')} / {lat.get('max')}")
    bad = summary["receivers_with_problems"]
    if bad:
        print(f"\nreceivers with problems ({len(bad)}; first 10):")
        for r in bad[:10]:
            print(f"  {r['id']} ({r['group']}, {r['node']}): expected {r['expected']}, received {r['received']}, "
                  f"lost {r['lost']}, duplicated {r['duplicated']}, out of order {r['outOfOrder']}, "
                  f"misdelivered {r['misdelivered']}, disconnected {r['disconnected']}")
    else:
        print("\nper receiver: every receiver has 0 lost, 0 duplicated, 0 out of order")
    if summary["rss_mb"]:
        names = list(summary["rss_mb"][0]["rss_mb"])
        print("\nserver worker RSS (MiB) over time")
        print(f"  {'t (s)':>7}  {'stage':<8}" + "".join(f"{n:>10}" for n in names))
        for s in summary["rss_mb"]:
            print(f"  {s['t']:>7.1f}  {s['stage']:<8}" + "".join(f"{s['rss_mb'].get(n, 0):>10.1f}" for n in names))
        print("\nserver CPU seconds (workers; setup = tickets+connect+auth)")
        for name, cpu in summary["cpu_s"].items():
            print(f"  {name:<8} setup {cpu['setup_s']:>7.2f}   traffic {cpu['traffic_s']:>7.2f}")
    client = summary.get("client_cpu_ms") or {}
    if client.get("traffic") is not None:
        print(f"  load generator (Node) CPU: setup {client['setup'] / 1000:.2f}s, traffic {client['traffic'] / 1000:.2f}s")
    if summary.get("hostile"):
        print("\nhostile clients (attempts, and what the node did with them)")
        for name, stats in summary["hostile"]["stats"].items():
            print(f"  {name:<12} " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
        files = [(s["stage"], s["open_files"]) for s in summary["rss_mb"]]
        print("worker open files: " + ", ".join(f"{stage} {sum(f.values())}" for stage, f in files))
    for problem in summary["problems"]:
        print(f"PROBLEM: {problem}")
    if summary.get("server_logs"):
        print("server logs kept: " + " ".join(summary["server_logs"]))
    print("OK" if summary["ok"] else "FAILED")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--connections", type=int, default=200, help="socket.io connections in total")
    parser.add_argument("--groups", type=int, default=10, help="groups (each: one teacher, the rest students)")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the traffic")
    parser.add_argument("--broadcast-rate", type=float, default=50.0, help="broadcasts per second, in total")
    parser.add_argument("--unicast-rate", type=float, default=20.0, help="unicasts per second, in total")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--redis", action="store_true", help="a ticket service + 2 nodes sharing a redis-server")
    where.add_argument("--url", help="soak an existing deployment (its ticket API) instead of starting one")
    parser.add_argument("--hostile", action="store_true",
                        help="hostile and slow clients (scripts/hostile.py) attack the node during the traffic")
    parser.add_argument("--attacks", default=",".join(hostile_clients.ATTACKS),
                        help="with --hostile: which attacks, comma-separated")
    parser.add_argument("--auth-timeout", type=float, default=10.0, help="with --hostile: the node's GRU_AUTH_TIMEOUT")
    parser.add_argument("--header-timeout", type=float, default=10.0,
                        help="with --hostile: the node's GRU_HEADER_TIMEOUT")
    parser.add_argument("--settle-timeout", type=float, default=30.0,
                        help="with --hostile: seconds to wait for open files to return to idle after the attack")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic's random choices")
    parser.add_argument("--setup-timeout", type=float, default=120.0, help="limit for tickets+connect+auth, s")
    parser.add_argument("--drain-timeout", type=float, default=15.0,
                        help="seconds to wait for outstanding deliveries after the last send")
    args = parser.parse_args(argv)
    for name in ("connections", "groups", "seconds", "sample_every", "setup_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("broadcast_rate", "unicast_rate", "drain_timeout"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.hostile and (args.redis or args.url):
        parser.error("--hostile attacks the one node this script starts: not with --redis or --url")
    unknown = set(args.attacks.split(",")) - set(hostile_clients.ATTACKS)
    if unknown:
        parser.error(f"--attacks: unknown {', '.join(sorted(unknown))} (known: {', '.join(hostile_clients.ATTACKS)})")
    if args.connections < 2 * args.groups:
        parser.error("every group needs a teacher and at least one student: --connections >= 2 * --groups")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        summary = run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 2
    except (RuntimeError, OSError) as exc:
        log(f"FAILED: {exc}")
        return 2
    finally:
        stop_all()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
