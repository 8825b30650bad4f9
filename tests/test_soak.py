"""scripts/soak.py end to end: steady traffic on one node and across two nodes; nothing lost, doubled or reordered.

CI runs the short configurations; the long one (2,000 connections for 10 minutes) only with
``GRU_SOAK_LONG=1`` (and it is marked ``slow``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SOAK = REPO_ROOT / "scripts" / "soak.py"
SHORT = ["--connections", "40", "--groups", "4", "--seconds", "8", "--sample-every", "2"]


def soak(*args: str, timeout: float) -> dict:
    """Run the soak script; return its --json summary (failing with its output if it has none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRU_")}  # the soak's own defaults
    proc = subprocess.run([sys.executable, str(SOAK), *args, "--json"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"soak.py exited {proc.returncode} without a JSON summary\n--- stdout ---\n{proc.stdout[-3000:]}"
                    f"\n--- stderr ---\n{proc.stderr[-3000:]}")
    summary["exit_code"] = proc.returncode
    summary["stderr_tail"] = proc.stderr[-2000:]
    return summary


def assert_clean(summary: dict, connections: int) -> None:
    totals = summary["totals"]
    context = json.dumps({k: summary[k] for k in ("problems", "totals", "receivers_with_problems", "stderr_tail")},
                         indent=1)[:6000]
    assert (totals["lost"], totals["duplicated"], totals["out_of_order"]) == (0, 0, 0), context
    assert summary["exit_code"] == 0 and summary["ok"] is True, context
    assert totals["connections"] == connections, context
    assert totals["sent_broadcasts"] > 0 and totals["sent_unicasts"] > 0, context
    assert totals["delivered"] == totals["expected_deliveries"] > 0, context
    assert len(summary["per_receiver"]) == connections
    assert all(r["lost"] == r["duplicated"] == r["outOfOrder"] == 0 for r in summary["per_receiver"]), context
    assert summary["latency_ms"]["p99"] is not None, context


def test_soak_on_the_embedded_default():
    summary = soak(*SHORT, timeout=100)
    assert_clean(summary, 40)
    assert summary["rss_mb"] and all(s["rss_mb"]["node_1"] > 0 for s in summary["rss_mb"]), summary["rss_mb"]
    assert summary["cpu_s"]["node_1"]["traffic_s"] > 0, summary["cpu_s"]


def test_soak_across_two_nodes_sharing_redis():
    summary = soak(*SHORT, "--redis", timeout=110)
    assert_clean(summary, 40)
    per_node = summary["connections_per_node"]
    assert len(per_node) == 2 and set(per_node.values()) == {20}, per_node
    assert {"ticket", "node_1", "node_2", "redis"} <= set(summary["rss_mb"][-1]["rss_mb"]), summary["rss_mb"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(os.environ.get("GRU_SOAK_LONG") != "1", reason="long soak: set GRU_SOAK_LONG=1 to run it")
def test_long_soak_with_two_thousand_connections():
    summary = soak("--connections", "2000", "--groups", "10", "--seconds", "600", "--setup-timeout", "300",
                   timeout=1100)
    assert_clean(summary, 2000)


def test_hostile_clients_do_not_disturb_a_class():
    """Items of docs/security.md's threat model at once (scripts/hostile.py) while a class works:
    nothing lost for the class, every hostile attempt let go of, open files back to idle."""
    summary = soak("--connections", "20", "--groups", "2", "--seconds", "16", "--sample-every", "2", "--hostile",
                   "--auth-timeout", "2", "--header-timeout", "2", "--settle-timeout", "15", timeout=150)
    assert_clean(summary, 20)
    stats = summary["hostile"]["stats"]
    assert set(stats) == {"bad_post", "attachments", "eio_only", "slowloris", "slow_reader", "overlap"}, stats
    assert all(s.get("attempts", 0) > 0 and not s.get("held") for s in stats.values()), stats
    idle, after = summary["rss_mb"][0]["open_files"], summary["rss_mb"][-1]["open_files"]
    assert after["node_1"] <= idle["node_1"] + 4, summary["rss_mb"]
