#!/usr/bin/env python3
"""How a Gru deployment scales with its nodes: deliveries/s and each node's CPU per delivery.

For each node count of ``--nodes`` (default ``1,2,3``) the script starts a redis-server, a ticket
service and that many nodes (gunicorn, one worker each, the settings of ``bench_cluster.py``), then
``--groups-per-node`` × nodes classes of one teacher and ``--students`` students, every user placed
by its own ticket (``scripts/bench/scale_load.js``). Every teacher sends ``--messages`` broadcasts at
once (at most ``--window`` unanswered each). Two placements per node count:

* ``spread``: every user on the node its ticket names, so a class is spread over the nodes;
* ``grouped``: a whole class on the node its teacher's ticket names (a class kept on one node).

Printed per run: deliveries/s, server CPU µs per delivery (all nodes together), each node's CPU µs
per delivery it made (its CPU over the deliveries to its own connections), redis-server CPU µs per
delivery, and the tickets and connections per node. With each class on one node, a node's CPU per
delivery should stay flat as nodes are added: a node pays only for the broadcasts of its own classes.

The load generators share the machine with the servers (``--loaders`` splits the classes over
several Node processes for machines with many cores). Run from the repository root::

    .venv/bin/python scripts/bench_scale.py                     # 1, 2, 3 nodes, both placements
    .venv/bin/python scripts/bench_scale.py --nodes 1,2,4,8 --groups-per-node 100 --messages 60 --loaders 4
    .venv/bin/python scripts/bench_scale.py --json > scale.json

Exit status 1 if a message was lost, duplicated or refused, or a run failed; 2 if it could not run.
"""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import sys
import time

from bench_cluster import BENCH_DIR, Deployment, Meter, NodeScript, RedisProc, log, stop_all
from bench_core import machine_info, median_of, wait_for

SCALE_JS = BENCH_DIR / "scale_load.js"
PLACEMENTS = ("spread", "grouped")


class Loaders:
    """``count`` Node load generators that together make the run's classes (ids kept apart by prefix)."""

    def __init__(self, dep: Deployment, groups: int, args: argparse.Namespace, placement: str) -> None:
        shares = [groups // args.loaders + (1 if i < groups % args.loaders else 0) for i in range(args.loaders)]
        self.scripts = [NodeScript(SCALE_JS, {
            "ticketUrl": dep.ticket_url, "groups": share, "students": args.students, "messages": args.messages,
            "window": args.window, "placement": placement, "prefix": f"{dep.prefix}-{placement}-l{i}",
            "setupTimeout": args.setup_timeout, "sendTimeout": args.run_timeout, "waitForGo": True,
        }) for i, share in enumerate(shares) if share]

    def ready(self, timeout: float) -> list[dict]:
        return [script.next_report(timeout) for script in self.scripts]

    def go(self) -> None:
        for script in self.scripts:
            script.go()

    def results(self, timeout: float) -> list[dict]:
        return [script.next_report(timeout) for script in self.scripts]

    def stop(self) -> None:
        for script in self.scripts:
            script.stop()


def settle(dep: Deployment, timeout: float = 20.0) -> None:
    """Wait until every node has reported that the last run's connections are gone: a node still
    reporting them would get none of the next run's tickets."""
    import redis

    client = redis.Redis.from_url(dep.redis.url, socket_timeout=2)
    try:
        def idle() -> bool:
            reports = [json.loads(raw) for raw in client.hgetall(f"{dep.prefix}:instances").values()]
            return all(r.get("connections", 0) <= len(dep.idle) for r in reports if r.get("node") != "ticket")
        wait_for(idle, timeout, "the nodes to report the last run's connections closed")
    finally:
        client.close()


def merged(reports: list[dict], key: str) -> dict:
    total: dict = {}
    for report in reports:
        for name, count in (report.get(key) or {}).items():
            total[name] = total.get(name, 0) + count
    return total


def scale_run(dep: Deployment, args: argparse.Namespace, placement: str) -> dict:
    groups = args.groups_per_node * len(dep.nodes)
    settle(dep)
    loaders = Loaders(dep, groups, args, placement)
    try:
        ready = loaders.ready(args.setup_timeout + 15)
        problems = [r.get("error") or "not ready" for r in ready if r.get("phase") != "ready"]
        if problems:
            raise RuntimeError(f"setup failed: {problems[0]}")
        meter = Meter(dep, loaders.scripts[0].proc.pid)
        started = time.perf_counter()
        cpu_before = dep.cpu()
        loaders.go()
        reports = loaders.results(args.run_timeout + 20)
        wall = time.perf_counter() - started
        cpu_after = dep.cpu()
        deliveries = sum(r.get("deliveries") or 0 for r in reports)
        figures = meter.figures(deliveries, "delivery")
    finally:
        loaders.stop()
    per_node = merged(reports, "deliveriesPerNode")
    connections, tickets = merged(reports, "connectionsPerNode"), merged(reports, "ticketsPerNode")
    node_us = {}
    for node in dep.nodes:
        cpu = cpu_after["servers"][node.name] - cpu_before["servers"].get(node.name, 0.0)
        made = per_node.get(node.url, 0)
        node_us[node.name] = 1e6 * cpu / made if made else None
    errors = [r["error"] for r in reports if r.get("error")]
    return {
        "ok": all(r.get("ok") for r in reports), "error": errors[0] if errors else None,
        "nodes": len(dep.nodes), "placement": placement, "groups": groups, "receivers": groups * args.students,
        "deliveries": deliveries, "expected": sum(r.get("expected") or 0 for r in reports),
        "lost": sum(r.get("lost") or 0 for r in reports), "duplicated": sum(r.get("duplicated") or 0 for r in reports),
        "refused": sum(r.get("refused") or 0 for r in reports),
        "deliveries_per_s": deliveries / wall if wall else None,
        "node_cpu_us_per_delivery": node_us,
        "max_node_cpu_us_per_delivery": max((v for v in node_us.values() if v is not None), default=None),
        "tickets_per_node": {name: tickets.get(name, 0) for name in (n.name for n in dep.nodes)},
        "connections_per_node": {n.name: connections.get(n.url, 0) for n in dep.nodes},
        **figures,
    }


def run(args: argparse.Namespace) -> dict:
    result = {"machine": machine_info(), "config": {k: v for k, v in vars(args).items() if k != "json"},
              "runs": [], "problems": []}
    redis = RedisProc()
    try:
        for count in args.nodes:
            log(f"starting a ticket service and {count} node(s)")
            dep = Deployment(f"ticket service + {count} node(s), Redis", count, redis)
            try:
                for placement in PLACEMENTS:
                    runs = []
                    for i in range(args.repeat):
                        log(f"{count} node(s), {placement}, run {i + 1}/{args.repeat}: "
                            f"{args.groups_per_node * count} classes of 1 + {args.students}, {args.messages} messages")
                        try:
                            runs.append(scale_run(dep, args, placement))
                        except (RuntimeError, OSError) as exc:
                            result["problems"].append(f"{count} node(s) {placement} run {i + 1}: {exc}")
                    if runs:
                        result["runs"].append(summary(runs))
            finally:
                dep.stop()
    finally:
        stop_all()
    for entry in result["runs"]:
        for key in ("lost", "duplicated", "refused"):
            if entry.get(key):
                result["problems"].append(f"{entry['nodes']} node(s) {entry['placement']}: {key} {entry[key]}")
        if entry.get("error"):
            result["problems"].append(f"{entry['nodes']} node(s) {entry['placement']}: {entry['error']}")
    result["ok"] = not result["problems"]
    return result


def summary(runs: list[dict]) -> dict:
    """Medians of the numbers; the rest (placements, per-node maps) from the median run by rate."""
    middle = sorted(runs, key=lambda r: r.get("deliveries_per_s") or 0)[len(runs) // 2]
    numbers = median_of(runs)
    node_us = {name: _median([r["node_cpu_us_per_delivery"].get(name) for r in runs])
               for name in middle["node_cpu_us_per_delivery"]}
    return {**middle, **numbers, "node_cpu_us_per_delivery": node_us,
            "lost": sum(r["lost"] for r in runs), "duplicated": sum(r["duplicated"] for r in runs),
            "refused": sum(r["refused"] for r in runs), "runs": len(runs)}


def _median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def print_report(result: dict) -> None:
    machine, config = result["machine"], result["config"]
    print(f"machine: {machine['cpus']} CPU(s), {machine['cpu_model'] or 'unknown model'}; classes of 1 teacher + "
          f"{config['students']} students, {config['groups_per_node']} classes per node, {config['messages']} "
          f"broadcasts per class (window {config['window']}); median of {config['repeat']}")
    header = (f"{'nodes':>5} {'placement':<9} {'deliv/s':>8} {'µs/deliv':>8} {'redis µs':>8}  "
              f"{'node µs/delivery':<24} {'tickets per node':<22} connections per node")
    print(header)
    for e in result["runs"]:
        node_us = "/".join(f"{v:.1f}" if v is not None else "-" for v in e["node_cpu_us_per_delivery"].values())
        tickets = "/".join(str(v) for v in e["tickets_per_node"].values())
        conns = "/".join(str(v) for v in e["connections_per_node"].values())
        print(f"{e['nodes']:>5} {e['placement']:<9} {_num(e.get('deliveries_per_s'), '{:.0f}'):>8} "
              f"{_num(e.get('server_cpu_us_per_delivery'), '{:.1f}'):>8} "
              f"{_num(e.get('redis_cpu_us_per_delivery'), '{:.2f}'):>8}  {node_us:<24} {tickets:<22} {conns}")
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print("OK" if result["ok"] else "FAILED")


def _num(value, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--nodes", default="1,2,3", help="comma-separated node counts")
    parser.add_argument("--groups-per-node", type=int, default=20, help="classes per node")
    parser.add_argument("--students", type=int, default=10, help="students per class (the teacher sends)")
    parser.add_argument("--messages", type=int, default=30, help="broadcasts per class")
    parser.add_argument("--window", type=int, default=5, help="unanswered broadcasts allowed per teacher")
    parser.add_argument("--loaders", type=int, default=1, help="Node load generator processes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per node count and placement (median shown)")
    parser.add_argument("--setup-timeout", type=float, default=180.0, help="seconds for tickets, connects, auths")
    parser.add_argument("--run-timeout", type=float, default=180.0, help="seconds for the broadcasts of one run")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    try:
        args.nodes = [int(n) for n in args.nodes.split(",")]
    except ValueError:
        parser.error("--nodes: comma-separated integers, e.g. 1,2,3")
    for name in ("groups_per_node", "students", "messages", "window", "loaders", "repeat"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if any(n <= 0 for n in args.nodes):
        parser.error("--nodes: every count must be positive")
    return args


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


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
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
