#!/usr/bin/env python3
"""Benchmark of one Gru worker (the embedded default: one gunicorn worker, state in memory).

Two phases, each run ``--repeat`` times (the table shows every run and the median):

1. **ticket**: ``--ticket-clients`` threads, each with its own keep-alive ``requests.Session``,
   call ``GET /ticket`` with valid parameters for ``--ticket-seconds``. Reported: requests/s,
   p50/p99 latency, errors (non-200 answers) and failures (no answer at all).
2. **broadcast**: ``scripts/bench/broadcast_load.js`` (Node, socket.io-client from the repo's
   node_modules) fetches tickets for ``--receivers`` students and one teacher, connects and
   authenticates them all over WebSocket in one fresh group, then the teacher emits
   ``--messages`` broadcasts with at most ``--window`` ``msg_result``s outstanding. Reported:
   deliveries/s (first send to last delivery), lost and duplicated deliveries (both must be 0),
   p50/p99 delivery latency (send to receive, one process, one clock).

By default the script starts its own server (``gunicorn -c gunicorn.conf.py wsgi:app`` on a free
loopback port; other ``GRU_*`` variables of the environment pass through, e.g.
``GRU_LOG_LEVEL=WARNING``) and then also reports the worker's CPU time per phase (``utime+stime``
from ``/proc``), hence server CPU µs per ticket and per delivery, and its RSS at the end. With
``--url`` it measures an existing node instead (no server CPU or RSS figures then).

The load generators run on the same machine: their own CPU use is reported too, so a
generator-bound result can be told from a server-bound one.

Run (from the repository root; exits 1 if a message was lost or duplicated or a phase failed)::

    .venv/bin/python scripts/bench_core.py                 # defaults: about 15 s
    .venv/bin/python scripts/bench_core.py --repeat 3 --json
    .venv/bin/python scripts/bench_core.py --url http://127.0.0.1:30000 --receivers 500
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_JS = REPO_ROOT / "scripts" / "bench" / "broadcast_load.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_REQUESTS_PER_CLIENT = 500_000  # hard bound of the ticket loop, besides its duration
TICKET_TIMEOUT = 5.0  # seconds one GET /ticket may take
WARMUP_REQUESTS = 5  # per client, before the clock starts


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class OwnServer:
    """A gunicorn master started by this script, and what /proc says about its workers."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def worker_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int(_proc_stat(int(entry.name))[1]) == self.proc.pid:
                        pids.append(int(entry.name))
                except (OSError, IndexError, ValueError):
                    continue  # the process went away meanwhile
        return pids

    def cpu_seconds(self) -> float:
        """utime + stime of every worker, in seconds."""
        ticks = 0
        for pid in self.worker_pids():
            fields = _proc_stat(pid)
            ticks += int(fields[11]) + int(fields[12])
        return ticks / CLK_TCK

    def memory_mb(self) -> dict[str, float]:
        """Current and peak RSS of the workers, in MiB."""
        pids = self.worker_pids()
        return {"rss_mb": sum(_status_kb(p, "VmRSS") for p in pids) / 1024,
                "peak_rss_mb": sum(_status_kb(p, "VmHWM") for p in pids) / 1024}

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log_path.unlink(missing_ok=True)


def _gunicorn() -> str:
    for candidate in (REPO_ROOT / ".venv" / "bin" / "gunicorn", Path(sys.executable).with_name("gunicorn")):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("gunicorn")
    if not found:
        sys.exit("bench: gunicorn not found: run 'make setup' first")
    return found


def start_server(timeout: float = 20.0) -> OwnServer:
    """Start ``gunicorn -c gunicorn.conf.py wsgi:app`` with one worker on a free loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
    env.update(GRU_BIND=f"127.0.0.1:{port}", GRU_WORKERS="1", PYTHONUNBUFFERED="1")
    # one load generator sends as fast as it can from one address: lift the per-client limits
    for name in ("GRU_RATE_LIMIT", "GRU_RATE_BURST", "GRU_MAX_PENDING_PER_ADDRESS"):
        env.setdefault(name, "100000")
    fd, name = tempfile.mkstemp(prefix="gru-bench-", suffix=".log")
    with os.fdopen(fd, "wb") as log_file:
        proc = subprocess.Popen([_gunicorn(), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=REPO_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = OwnServer(proc, f"http://127.0.0.1:{port}", Path(name))
    try:
        wait_healthy(server.url, timeout, proc)
        wait_for(lambda: bool(server.worker_pids()), timeout, "a gunicorn worker")
    except (OSError, RuntimeError) as exc:
        tail = server.log_tail()
        server.stop()
        raise RuntimeError(f"server did not start: {exc}\n--- server log ---\n{tail}") from None
    return server


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.05)


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1.0):
                return
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{url}/healthz answered HTTP {exc.code}") from None
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url}/healthz did not answer within {timeout:.0f}s")


# --------------------------------------------------------------------------- helpers


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(rank)]


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Server CPU over an interval, when the server is ours; empty figures otherwise."""

    def __init__(self, server: OwnServer | None) -> None:
        self.server = server
        self.start_cpu = server.cpu_seconds() if server else 0.0
        self.start_wall = time.perf_counter()

    def figures(self, units: int, unit_name: str) -> dict:
        if self.server is None:
            return {}
        cpu = self.server.cpu_seconds() - self.start_cpu
        wall = time.perf_counter() - self.start_wall
        return {"server_cpu_s": cpu, "server_cpu_pct": 100 * cpu / wall if wall else None,
                f"server_cpu_us_per_{unit_name}": 1e6 * cpu / units if units else None,
                # what one worker could do with a whole core to itself, at this CPU cost per unit
                "ceiling_per_s": units / cpu if units and cpu else None}


# --------------------------------------------------------------------------- phase 1: tickets


def token1_for(args: argparse.Namespace, user_id: str, user_type: int) -> str:
    """The fixed token1, or the hmac scheme's ``<expires>.<hex>`` when a secret is given (see README)."""
    if not args.token1_secret:
        return args.token1
    expires = int(time.time()) + 3600
    digest = hmac.new(args.token1_secret.encode(), f"{user_id}|{user_type}|{expires}".encode(), hashlib.sha256)
    return f"{expires}.{digest.hexdigest()}"


def _ticket_params(args: argparse.Namespace, client: int, n: int) -> dict:
    user_id = f"bench-{client}-{n}"
    return {"userType": 1, "userName": f"bench {client}", "userId": user_id, "token1": token1_for(args, user_id, 1)}


def _ticket_client(url: str, client: int, args: argparse.Namespace, start: threading.Barrier,
                   deadline: list[float], out: dict) -> None:
    latencies: list[float] = []
    errors = failures = 0
    with requests.Session() as session:
        for n in range(WARMUP_REQUESTS):
            try:
                session.get(f"{url}/ticket", params=_ticket_params(args, client, -n - 1), timeout=TICKET_TIMEOUT)
            except requests.RequestException:
                pass  # the measured loop counts failures
        try:
            start.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.perf_counter() >= deadline[0]:
                break
            began = time.perf_counter()
            try:
                response = session.get(f"{url}/ticket", params=_ticket_params(args, client, n),
                                       timeout=TICKET_TIMEOUT)
            except requests.RequestException:
                failures += 1
                continue
            latencies.append(time.perf_counter() - began)
            errors += response.status_code != 200
    out[client] = (latencies, errors, failures)


def ticket_phase(url: str, args: argparse.Namespace, server: OwnServer | None) -> dict:
    """C keep-alive clients call GET /ticket for `seconds`; return the figures of the run."""
    clients, seconds = args.ticket_clients, args.ticket_seconds
    out: dict[int, tuple[list[float], int, int]] = {}
    deadline = [float("inf")]

    def set_deadline() -> None:  # runs once, when every client has warmed up
        deadline[0] = time.perf_counter() + seconds

    barrier = threading.Barrier(clients + 1, action=set_deadline)
    threads = [threading.Thread(target=_ticket_client, args=(url, c, args, barrier, deadline, out), daemon=True)
               for c in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        raise RuntimeError("ticket clients did not get through their warm-up within 60s") from None
    meter, client_cpu = CpuMeter(server), own_cpu_seconds()
    began = time.perf_counter()
    for thread in threads:
        thread.join(seconds + TICKET_TIMEOUT + 5)
    elapsed = time.perf_counter() - began
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("ticket clients did not stop in time")
    if len(out) != clients:
        raise RuntimeError(f"{clients - len(out)} ticket client(s) crashed (see the traceback above)")
    latencies = sorted(lat for lats, _, _ in out.values() for lat in lats)
    answered = len(latencies)
    result = {
        "clients": clients, "seconds": elapsed, "requests": answered,
        "requests_per_s": answered / elapsed,
        "p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
        "errors": sum(e for _, e, _ in out.values()),
        "failures": sum(f for _, _, f in out.values()),
        "client_cpu_pct": 100 * (own_cpu_seconds() - client_cpu) / elapsed,
    }
    result.update(meter.figures(answered, "ticket"))
    return result


# --------------------------------------------------------------------------- phase 2: broadcast


class NodeLoad:
    """The Node load generator as a child process, read line by line with timeouts."""

    def __init__(self, config: dict) -> None:
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node not found in PATH: the broadcast phase needs Node.js")
        self.proc = subprocess.Popen([node, str(LOAD_JS), json.dumps(config)], cwd=REPO_ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
                raise RuntimeError(f"broadcast_load.js exited (code {self.proc.wait(5)}) without a result")
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"broadcast_load.js said nothing for {timeout:.0f}s")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)


def broadcast_phase(url: str, args: argparse.Namespace, server: OwnServer | None) -> dict:
    """Run broadcast_load.js once; measure server CPU for its setup and for its broadcast phase."""
    config = {"url": url, "receivers": args.receivers, "messages": args.messages, "window": args.window,
              "sendTimeout": args.broadcast_timeout, "setupTimeout": args.setup_timeout,
              "token1": args.token1, "token1Secret": args.token1_secret, "waitForGo": True}
    load = NodeLoad(config)
    try:
        setup_meter = CpuMeter(server)
        report = load.next_report(args.setup_timeout + 10)
        if report.get("phase") == "ready":
            connections = args.receivers + 1
            setup = setup_meter.figures(connections, "connection")
            phase_meter = CpuMeter(server)
            load.go()
            report = load.next_report(args.broadcast_timeout + 15)
            phase = phase_meter.figures(report.get("deliveries") or 0, "delivery")
        else:
            setup, phase = {}, {}
    finally:
        load.close()
    return _broadcast_figures(report, setup, phase)


def _broadcast_figures(report: dict, setup: dict, phase: dict) -> dict:
    latency = report.get("latencyMs") or {}
    cpu = report.get("clientCpuMs") or {}
    duration_s = (report.get("durationMs") or 0) / 1000
    result = {
        "ok": bool(report.get("ok")), "error": report.get("error"),
        "receivers": report.get("receivers"), "messages": report.get("messages"),
        "sent": report.get("sent"), "refused": report.get("refused"),
        "deliveries": report.get("deliveries"), "expected": report.get("expected"),
        "lost": report.get("lost"), "duplicated": report.get("duplicated"), "echoed": report.get("echoed"),
        "deliveries_per_s": report.get("deliveriesPerSec"), "broadcasts_per_s": report.get("broadcastsPerSec"),
        "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"), "max_ms": latency.get("max"),
        "setup_ms": report.get("setupMs"),
        "client_cpu_pct": 100 * cpu["phase"] / 1000 / duration_s if cpu.get("phase") and duration_s else None,
    }
    result.update(phase)
    if "server_cpu_us_per_connection" in setup:
        result["server_cpu_us_per_connection"] = setup["server_cpu_us_per_connection"]
    return result


# --------------------------------------------------------------------------- report


TICKET_ROWS = [
    ("requests/s", "requests_per_s", "{:.0f}"),
    ("latency p50 ms", "p50_ms", "{:.2f}"),
    ("latency p99 ms", "p99_ms", "{:.2f}"),
    ("errors (non-200)", "errors", "{:.0f}"),
    ("failures (no answer)", "failures", "{:.0f}"),
    ("server CPU µs / ticket", "server_cpu_us_per_ticket", "{:.0f}"),
    ("server CPU % of a core", "server_cpu_pct", "{:.0f}"),
    ("ceiling/s at 100% of a core", "ceiling_per_s", "{:.0f}"),
    ("client (Python) CPU %", "client_cpu_pct", "{:.0f}"),
]
BROADCAST_ROWS = [
    ("deliveries/s", "deliveries_per_s", "{:.0f}"),
    ("broadcasts/s", "broadcasts_per_s", "{:.0f}"),
    ("deliveries received", "deliveries", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("duplicated", "duplicated", "{:.0f}"),
    ("latency p50 ms", "p50_ms", "{:.1f}"),
    ("latency p99 ms", "p99_ms", "{:.1f}"),
    ("latency max ms", "max_ms", "{:.1f}"),
    ("server CPU µs / delivery", "server_cpu_us_per_delivery", "{:.1f}"),
    ("server CPU % of a core", "server_cpu_pct", "{:.0f}"),
    ("ceiling/s at 100% of a core", "ceiling_per_s", "{:.0f}"),
    ("client (Node) CPU %", "client_cpu_pct", "{:.0f}"),
    ("setup ms (R+1 tickets+auth)", "setup_ms", "{:.0f}"),
    ("server CPU µs / connection", "server_cpu_us_per_connection", "{:.0f}"),
]


def median_of(runs: list[dict]) -> dict:
    """Median of every numeric figure over the runs (booleans and text are left out)."""
    keys = {k for run in runs for k, v in run.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    medians = {}
    for key in sorted(keys):
        values = [run[key] for run in runs if isinstance(run.get(key), int | float)]
        medians[key] = statistics.median(values)
    return medians


def _cell(value: object, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def table(title: str, rows: list[tuple[str, str, str]], runs: list[dict]) -> str:
    columns = [f"run {i + 1}" for i in range(len(runs))]
    data = list(runs)
    if len(runs) > 1:
        columns.append("median")
        data.append(median_of(runs))
    label_width = max(len(label) for label, _, _ in rows)
    lines = [f"{title:<{label_width}}  " + "  ".join(f"{c:>9}" for c in columns)]
    for label, key, fmt in rows:
        if all(not isinstance(d.get(key), int | float) for d in data):
            continue  # e.g. server CPU when measuring an existing server
        lines.append(f"{label:<{label_width}}  " + "  ".join(f"{_cell(d.get(key), fmt):>9}" for d in data))
    return "\n".join(lines)


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = None
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), "node": node}


def print_report(result: dict) -> None:
    machine, config = result["machine"], result["config"]
    print(f"machine: {machine['cpus']} CPU(s), {machine['cpu_model'] or 'unknown model'}, "
          f"Python {machine['python']}, Node {machine['node']}")
    print(f"server:  {config['url']} ({'started by the bench' if config['own_server'] else 'existing'})")
    print(f"ticket:    {config['ticket_clients']} clients x {config['ticket_seconds']:g}s")
    print(f"broadcast: {config['receivers']} receivers x {config['messages']} messages, window {config['window']}")
    print()
    if result["ticket"]["runs"]:
        print(table("GET /ticket", TICKET_ROWS, result["ticket"]["runs"]))
        print()
    if result["broadcast"]["runs"]:
        print(table("broadcast", BROADCAST_ROWS, result["broadcast"]["runs"]))
        print()
    if result.get("server_memory"):
        mem = result["server_memory"]
        print(f"server worker RSS at end: {mem['rss_mb']:.1f} MiB (peak {mem['peak_rss_mb']:.1f} MiB)")
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print("OK" if result["ok"] else "FAILED")


def problems_of(result: dict) -> list[str]:
    problems = []
    for i, run in enumerate(result["ticket"]["runs"], 1):
        if run["errors"] or run["failures"]:
            problems.append(f"ticket run {i}: {run['errors']} error(s), {run['failures']} failure(s)")
    for i, run in enumerate(result["broadcast"]["runs"], 1):
        if run.get("lost") or run.get("duplicated") or run.get("echoed"):
            problems.append(f"broadcast run {i}: lost {run.get('lost')}, duplicated {run.get('duplicated')}, "
                            f"echoed to sender {run.get('echoed')}")
        if run.get("refused"):
            problems.append(f"broadcast run {i}: {run['refused']} broadcast(s) refused by the server")
        if run.get("error"):
            problems.append(f"broadcast run {i}: {run['error'].strip()}")
    return problems


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--url", help="base URL of an existing node (default: start one on a free loopback port)")
    parser.add_argument("--ticket-seconds", type=float, default=5.0, help="duration of one ticket run")
    parser.add_argument("--ticket-clients", type=int, default=8, help="concurrent keep-alive HTTP clients")
    parser.add_argument("--receivers", type=int, default=200, help="sockets receiving the broadcasts")
    parser.add_argument("--messages", type=int, default=500, help="broadcasts sent per run")
    parser.add_argument("--window", type=int, default=20, help="unacknowledged msg_results allowed")
    parser.add_argument("--broadcast-timeout", type=float, default=30.0, help="time limit of one broadcast run, s")
    parser.add_argument("--setup-timeout", type=float, default=60.0, help="time limit for tickets+connect+auth, s")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase; the table adds the median")
    parser.add_argument("--skip", choices=["ticket", "broadcast"], help="leave one phase out")
    parser.add_argument("--token1", default="bench", help="token1 for the accept verifier")
    parser.add_argument("--token1-secret", default=None, help="sign token1 with this key (hmac verifier)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    args = parser.parse_args(argv)
    for name in ("ticket_seconds", "ticket_clients", "receivers", "messages", "window", "repeat"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def run(args: argparse.Namespace) -> dict:
    server = None if args.url else start_server()
    url = (args.url or server.url).rstrip("/")
    result = {"machine": machine_info(),
              "config": {"url": url, "own_server": server is not None, "ticket_clients": args.ticket_clients,
                         "ticket_seconds": args.ticket_seconds, "receivers": args.receivers,
                         "messages": args.messages, "window": args.window, "repeat": args.repeat},
              "ticket": {"runs": []}, "broadcast": {"runs": []}}
    try:
        if server is None:
            wait_healthy(url, 10)
        if args.skip != "ticket":
            for i in range(args.repeat):
                log(f"ticket run {i + 1}/{args.repeat}: {args.ticket_clients} clients x {args.ticket_seconds:g}s")
                result["ticket"]["runs"].append(ticket_phase(url, args, server))
        if args.skip != "broadcast":
            for i in range(args.repeat):
                log(f"broadcast run {i + 1}/{args.repeat}: {args.receivers} receivers x {args.messages} messages")
                result["broadcast"]["runs"].append(broadcast_phase(url, args, server))
        if server is not None:
            result["server_memory"] = server.memory_mb()
    finally:
        if server is not None:
            server.stop()
    for phase in ("ticket", "broadcast"):
        result[phase]["median"] = median_of(result[phase]["runs"]) if result[phase]["runs"] else {}
    result["problems"] = problems_of(result)
    result["ok"] = not result["problems"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (RuntimeError, OSError) as exc:
        log(f"FAILED: {exc}")
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
