#!/usr/bin/env python3
"""Gru against a Node socket.io 4 server with the same API, side by side, in the same run.

For every scenario and repeat, each target gets a fresh server and the same load generator
(``scripts/bench/compare_load.js``: one Node process, socket.io-client 4, WebSocket only, every
client through GET /ticket → connect → auth with token2 → msg). Targets:

* ``gru``: ``gunicorn -c gunicorn.conf.py wsgi:app``, one worker, the embedded default (memory);
* ``node``: ``scripts/bench/node_reference.js`` (socket.io 4.8 from the repo's node_modules);
* ``gru-redis`` (opt-in): one Gru worker with a ``redis-server`` the script starts, so the cost
  of the Redis path per message can be read against ``gru``'s.

Server CPU is utime+stime of the server's whole process tree (``/proc``), taken between the
load generator's phases; RSS is the tree's VmRSS. Scenarios and their unit:

* ``broadcast-N``: one teacher, N students; deliveries/s, latency, CPU µs per delivery;
* ``pingpong-P``: P teacher/student pairs exchanging unicasts; CPU µs per round trip;
* ``conns-N``: N clients connect and authenticate (CPU µs per connection, connections/s), stay
  idle (RSS KB per connection above the server's RSS before), then all close at once (CPU µs
  per disconnect, seconds until the server's CPU settles).

Runs are interleaved (scenario by scenario, the targets' order alternating between repeats) and
the table shows medians; these machines drift ±30 %. ``--pin`` runs the servers on CPU 0 and
the load generator on CPU 1. Exit status 1 if a message was lost or duplicated or a run failed.

Run from the repository root::

    .venv/bin/python scripts/bench_compare.py                        # everything, 3 repeats
    .venv/bin/python scripts/bench_compare.py --pin --only broadcast-1000,pingpong-50
    .venv/bin/python scripts/bench_compare.py --targets gru,gru-redis --only pingpong-50
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_JS = REPO_ROOT / "scripts" / "bench" / "compare_load.js"
NODE_JS = REPO_ROOT / "scripts" / "bench" / "node_reference.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIOS = {
    "broadcast-200": {"scenario": "broadcast", "receivers": 200, "messages": 300},
    "broadcast-1000": {"scenario": "broadcast", "receivers": 1000, "messages": 100},
    "pingpong-1": {"scenario": "pingpong", "pairs": 1, "roundTrips": 1000},
    "pingpong-50": {"scenario": "pingpong", "pairs": 50, "roundTrips": 5000},
    "conns-2000": {"scenario": "conns", "count": 2000},
    "conns-5000": {"scenario": "conns", "count": 5000},
}
TARGETS = {"ratio": ("Gru/Node", "gru", "node"), "redis": ("Redis/memory", "gru-redis", "gru")}
SETTLE_IDLE_S = 0.5  # the server's CPU did not move for this long: the disconnects are done
SETTLE_LIMIT_S = 120.0


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def tree_cpu(root: int) -> float:
    """utime + stime of the process tree, in seconds."""
    ticks = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / CLK_TCK


def tree_rss_kb(root: int) -> int:
    total = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A server process group started by this script."""

    name: str
    proc: subprocess.Popen
    url: str
    log_path: Path
    extra: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for proc in [self.proc, *self.extra]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self.log_path.unlink(missing_ok=True)

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


def pinned(command: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if cpu is not None else command


def start_server(target: str, cpu: int | None, redis_cpu: int | None = None) -> Server:
    """A fresh server for one run: Gru (one worker; memory or Redis) or the Node reference."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix=f"bench-{target}-", suffix=".log")
    extra = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRU_") and k != "GUNICORN_CMD_ARGS"}
    if target == "node":
        command = ["node", str(NODE_JS), json.dumps({"port": port, "host": "127.0.0.1"})]
    else:
        env.update(GRU_BIND=f"127.0.0.1:{port}", GRU_WORKERS="1", GRU_LOG_LEVEL="WARNING",
                   GRU_SECRET=secrets.token_hex(24), GRU_RATE_LIMIT="100000", GRU_RATE_BURST="100000",
                   GRU_MAX_PENDING_PER_ADDRESS="1000000", GRU_MAX_CONNECTIONS="100000", PYTHONUNBUFFERED="1")
        if target == "gru-redis":
            redis_port = free_port()
            extra.append(subprocess.Popen(
                pinned(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"], cpu if redis_cpu is None else redis_cpu), stdout=subprocess.DEVNULL, start_new_session=True))
            env.update(GRU_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", GRU_REDIS_PREFIX=f"b{port}")
            wait_port(redis_port)
        command = [str(REPO_ROOT / ".venv" / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(pinned(command, cpu), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(target, proc, f"http://127.0.0.1:{port}", Path(name), extra)
    try:
        wait_ready(server)
    except RuntimeError:
        tail = server.log_tail()
        server.stop()
        raise RuntimeError(f"{target} did not start:\n{tail}") from None
    return server


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not listening")


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    """The server answers a ticket request (and its workers have warmed up a little)."""
    deadline = time.monotonic() + timeout
    url = f"{server.url}/ticket?userType=1&userName=w&userId=w&token1=bench"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                answer.read()
            time.sleep(0.3)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer /ticket")


# --------------------------------------------------------------------------- one run


class Load:
    """The load generator process and its JSON-lines conversation."""

    def __init__(self, config: dict, cpu: int | None, timeout: float) -> None:
        self.proc = subprocess.Popen(pinned(["node", str(LOAD_JS), json.dumps({**config, "timeout": timeout})], cpu),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def expect(self, phase: str) -> dict:
        for line in self.proc.stdout:
            message = json.loads(line)
            if message.get("phase") == phase:
                return message
            if message.get("phase") == "result" and not message.get("ok"):
                raise RuntimeError(message.get("error") or "load generator failed")
        raise RuntimeError(f"load generator ended before {phase!r} (exit {self.proc.wait()})")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def settle(pid: int) -> tuple[float, float]:
    """Wait until the server's CPU stops moving; (CPU seconds used, seconds until the last move)."""
    start, cpu0 = time.monotonic(), tree_cpu(pid)
    last_cpu, last_move = cpu0, start
    while time.monotonic() - start < SETTLE_LIMIT_S:
        time.sleep(0.05)
        cpu = tree_cpu(pid)
        now = time.monotonic()
        if cpu - last_cpu > 0.011:  # more than one clock tick: still working
            last_cpu, last_move = cpu, now
        elif now - last_move > SETTLE_IDLE_S:
            break
    return last_cpu - cpu0, last_move - start


def run_once(target: str, name: str, args: argparse.Namespace) -> dict:
    """One scenario against one fresh server; the figures of that run."""
    server_cpu, load_cpu = (0, 1) if args.pin else (None, None)
    redis_cpu = load_cpu if args.pin and args.redis_apart else None
    server = start_server(target, server_cpu, redis_cpu)
    pid = server.proc.pid
    load = Load({**SCENARIOS[name], "url": server.url}, load_cpu, args.timeout)
    try:
        if SCENARIOS[name]["scenario"] == "conns":
            return conns_run(server, pid, load)
        load.expect("ready")
        cpu0, t0 = tree_cpu(pid), time.perf_counter()
        load.go()
        result = load.expect("result")
        cpu = tree_cpu(pid) - cpu0
        units = result["units"]
        if not result["ok"]:
            raise RuntimeError(f"lost={result.get('lost')} duplicated={result.get('duplicated')} "
                               f"error={result.get('error')}")
        return {"per_s": result["perSec"], "p50_ms": result["latencyMs"]["p50"], "p99_ms": result["latencyMs"]["p99"],
                "cpu_us": 1e6 * cpu / units, "cpu_pct": 100 * cpu / (time.perf_counter() - t0),
                "out_of_order": result.get("outOfOrder", 0)}
    finally:
        load.close()
        server.stop()


def conns_run(server: Server, pid: int, load: Load) -> dict:
    load.expect("start")
    rss0, cpu0 = tree_rss_kb(pid), tree_cpu(pid)
    load.go()
    connected = load.expect("connected")
    count = connected["units"]
    cpu1 = tree_cpu(pid)
    settle(pid)
    rss1 = tree_rss_kb(pid)
    load.go()
    load.expect("closed")
    disconnect_cpu, disconnect_s = settle(pid)
    load.go()
    return {"per_s": connected["perSec"], "cpu_us": 1e6 * (cpu1 - cpu0) / count,
            "rss_kb": (rss1 - rss0) / count, "disc_cpu_us": 1e6 * disconnect_cpu / count, "disc_s": disconnect_s}


# --------------------------------------------------------------------------- report


METRICS = {  # key: (label, lower is better)
    "per_s": ("units/s", False), "p50_ms": ("latency p50 ms", True), "p99_ms": ("latency p99 ms", True),
    "cpu_us": ("server CPU µs/unit", True), "rss_kb": ("RSS KB/connection", True),
    "disc_cpu_us": ("disconnect CPU µs/conn", True), "disc_s": ("disconnect s (all)", True),
}
UNITS = {"broadcast": "delivery", "pingpong": "round trip", "conns": "connect+auth"}


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(results: dict, targets: list[str], repeat: int) -> str:
    lines = [f"medians of {repeat} interleaved runs per cell; ratio = first/second target of each pair"]
    pairs = [(label, a, b) for label, a, b in TARGETS.values() if a in targets and b in targets]
    header = f"{'scenario':16} {'metric':24}" + "".join(f"{t:>12}" for t in targets) + \
        "".join(f"{label:>14}" for label, _, _ in pairs)
    lines += [header, "-" * len(header)]
    for name in SCENARIOS:
        if not any(results.get((t, name)) for t in targets):
            continue
        for key, (label, _) in METRICS.items():
            cells = {t: median([r.get(key) for r in results.get((t, name), [])]) for t in targets}
            if all(v is None for v in cells.values()):
                continue
            row = f"{name:16} {label:24}" + "".join(f"{_fmt(cells[t]):>12}" for t in targets)
            for _, a, b in pairs:
                ratio = cells[a] / cells[b] if cells[a] and cells[b] else None
                row += f"{_fmt(ratio, '×'):>14}"
            lines.append(row)
    return "\n".join(lines)


def _fmt(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "-"
    if suffix:
        return f"{value:.2f}{suffix}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}, " \
           f"{subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    parser.add_argument("--targets", default="gru,node", help="comma-separated: gru, node, gru-redis")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario and target (median shown)")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, load generator on CPU 1")
    parser.add_argument("--redis-apart", action="store_true",
                        help="with --pin: redis-server on the load generator's CPU (as on its own host) "
                             "instead of sharing the server's")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each load phase may take")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    args = parser.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = [s for s in args.only if s not in SCENARIOS] + \
        [t for t in args.targets if t not in ("gru", "node", "gru-redis")]
    if unknown:
        parser.error(f"unknown scenario or target: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = [(r, name, target) for r in range(args.repeat) for name in args.only
            for target in (args.targets if r % 2 == 0 else args.targets[::-1])]
    results: dict[tuple[str, str], list[dict]] = {}
    failed = 0
    with click.progressbar(plan, label="bench", file=sys.stderr, show_pos=True,
                           item_show_func=lambda p: p and f"{p[1]} on {p[2]} (run {p[0] + 1})") as bar:
        for r, name, target in bar:
            try:
                results.setdefault((target, name), []).append(run_once(target, name, args))
            except (RuntimeError, OSError, ValueError) as exc:
                failed += 1
                log(f"FAILED {name} on {target} (run {r + 1}): {exc}")
    placement = "servers CPU 0, load CPU 1" if args.pin else "no"
    if args.pin and "gru-redis" in args.targets:
        placement += f", redis-server CPU {1 if args.redis_apart else 0}"
    print(f"machine: {machine()}; pinned: {placement}")
    print(report(results, args.targets, args.repeat))
    if args.json:
        args.json.write_text(json.dumps({f"{t}/{n}": runs for (t, n), runs in results.items()}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
