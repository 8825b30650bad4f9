#!/usr/bin/env python3
"""Broadcast deliveries/s of an all-Engine.IO-3 group against an all-Engine.IO-4 group.

Starts Gru (one gunicorn worker, in memory) on a free loopback port, then for each client
generation and transport runs ``scripts/bench/legacy_broadcast.js``: R receivers and one
sender of that generation in one group, M broadcasts. Same server, same load, only the
protocol differs. Every run is bounded in messages and time. The clients share the machine
with the server, so the server's own CPU per 1000 deliveries is shown beside the rate.

    .venv/bin/python scripts/bench_legacy.py --receivers 100 --messages 300 --repeat 3
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
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_JS = REPO_ROOT / "scripts" / "bench" / "legacy_broadcast.js"
GENERATIONS = {"EIO3 (socket.io-client 2.5.0)": "socket.io-client-2", "EIO4 (socket.io-client 4.8.3)": "socket.io-client"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gru() -> tuple[subprocess.Popen, str]:
    """Gru under gunicorn with the repo's gunicorn.conf.py, on loopback."""
    port = free_port()
    env = {**os.environ, "GRU_SECRET": secrets.token_hex(24), "GRU_BIND": f"127.0.0.1:{port}",
           "GRU_LOG_LEVEL": "WARNING", "GRU_AUTH_TIMEOUT": "120"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", "--graceful-timeout", "2", "wsgi:app"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("gru did not start")


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of the gunicorn master's children (the worker), from /proc."""
    total = 0.0
    for child in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split():
        fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_load(url: str, module: str, transport: str, args: argparse.Namespace) -> dict:
    config = {"url": url, "module": module, "transport": transport, "receivers": args.receivers,
              "messages": args.messages, "window": args.window}
    done = subprocess.run(["node", str(LOAD_JS), json.dumps(config)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=180)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": done.stderr[-500:] or "no result"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--transports", default="websocket,polling")
    args = parser.parse_args(argv)
    proc, url = start_gru()
    failed = False
    try:
        print(f"{args.receivers} receivers, {args.messages} broadcasts per run, {args.repeat} runs, median shown")
        print(f"{'group':32} {'transport':10} {'deliveries/s':>12} {'runs':>24} {'server CPU ms/1000':>19}  lost/dup")
        for transport in args.transports.split(","):
            for label, module in GENERATIONS.items():
                runs, cpu = [], []
                for _ in range(args.repeat):
                    before = server_cpu_seconds(proc.pid)
                    runs.append(run_load(url, module, transport, args))
                    cpu.append((server_cpu_seconds(proc.pid) - before) * 1000)
                errors = [r["error"] for r in runs if "error" in r]
                if errors:
                    failed = True
                    print(f"{label:32} {transport:10} error: {errors[0]}")
                    continue
                rates = [r["deliveriesPerSec"] for r in runs]
                losses = sum(r["lost"] for r in runs), sum(r["duplicated"] for r in runs)
                failed = failed or any(losses)
                per_1000 = statistics.median(c / max(r["deliveries"], 1) * 1000 for c, r in zip(cpu, runs, strict=True))
                print(f"{label:32} {transport:10} {statistics.median(rates):>12,.0f} {str(rates):>24} "
                      f"{per_1000:>19.1f}  {losses[0]}/{losses[1]}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
