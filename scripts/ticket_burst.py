#!/usr/bin/env python3
"""A burst of ``GET /ticket`` requests with a fixed number in flight: the 8:00 bell, when a school's
classes open at once. Prints one JSON line: status counts, latency percentiles, and how many
tickets named each node (primary and first backup).

    python scripts/ticket_burst.py http://127.0.0.1:30000 --total 2000 --in-flight 500

Each request has a connection of its own (``Connection: close``), as thousands of browsers would.
``--url`` may be given more than once: requests go to the ticket services in turn (several ticket
processes behind one balancer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlencode, urlsplit


async def _one(url: str, number: int, timeout: float) -> tuple[int, float, dict]:
    parts = urlsplit(url)
    query = urlencode({"userType": 1, "userName": f"student {number}", "userId": number, "token1": "t1"})
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
        writer.write(f"GET /ticket?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, TimeoutError) as exc:
        return 0, time.perf_counter() - started, {"error": type(exc).__name__}
    elapsed = time.perf_counter() - started
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
        answer = json.loads(body)
    except (IndexError, ValueError):
        return -1, elapsed, {}
    return status, elapsed, answer


async def burst(urls: list[str], total: int, in_flight: int, timeout: float) -> dict:
    """Send ``total`` ticket requests, at most ``in_flight`` at a time; summarise the answers."""
    gate = asyncio.Semaphore(in_flight)

    async def bounded(number: int):
        async with gate:
            return await _one(urls[number % len(urls)], number, timeout)

    started = time.perf_counter()
    results = await asyncio.gather(*(bounded(n) for n in range(total)))
    wall = time.perf_counter() - started
    statuses: Counter = Counter()
    primary: Counter = Counter()
    first_backup: Counter = Counter()
    errors: Counter = Counter()
    for status, _, answer in results:
        statuses[status] += 1
        data = answer.get("data") or {}
        if status == 200:
            primary[data["name"]] += 1
            if data["backupNodes"]:
                first_backup[f"{data['name']}>{data['backupNodes'][0]['name']}"] += 1
        elif answer:
            errors[answer.get("msg") or answer.get("error")] += 1
    latencies = sorted(elapsed for _, elapsed, _ in results)
    return {
        "total": total, "in_flight": in_flight, "wall_s": round(wall, 3),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "nodes": dict(sorted(primary.items())),
        "first_backups": dict(sorted(first_backup.items())),
    }


def _percentile(values: list[float], percent: float) -> float:
    return values[min(len(values) - 1, int(len(values) * percent / 100))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="+", help="ticket service base URL(s), e.g. http://127.0.0.1:30000")
    parser.add_argument("--total", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    if not 0 < args.in_flight <= 5000 or not 0 < args.total <= 100_000:
        parser.error("--in-flight must be 1..5000 and --total 1..100000")
    report = asyncio.run(burst(args.url, args.total, args.in_flight, args.timeout))
    print(json.dumps(report))
    return 0 if report["statuses"] == {"200": args.total} else 1


if __name__ == "__main__":
    sys.exit(main())
