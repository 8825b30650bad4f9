"""``gru bench`` and ``--help`` everywhere: the command an operator types to measure a worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GRU = str(Path(sys.executable).with_name("gru"))


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([GRU, *args], capture_output=True, text=True, timeout=timeout)


def test_bench_measures_a_running_node_with_progress_on_stderr(gru):
    result = run("bench", "--url", gru.url, "--ticket-seconds", "0.5", "--ticket-clients", "2", "--receivers", "5",
                 "--messages", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout stays clean JSON: the progress goes to stderr
    assert report["ok"] is True
    assert report["broadcast"]["runs"][0]["lost"] == 0
    assert report["ticket"]["runs"][0]["requests"] > 0
    assert "ticket run 1/1" in result.stderr and "broadcast run 1/1" in result.stderr


def test_bench_passes_bad_options_to_the_script_which_names_them():
    result = run("bench", "--repeat", "0")
    assert result.returncode == 2
    assert "--repeat must be positive" in result.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--help",), "bench"), (("serve", "--help"), "gunicorn"), (("cluster", "--help"), "--nodes"),
    (("smoke", "--help"), "BASE_URL"), (("bench", "--help"), "ticket requests/s"),
    (("bench", "--", "--help"), "--receivers"),
])
def test_help_everywhere(args, needle):
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert needle in result.stdout
