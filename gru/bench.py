"""``gru bench``: run the benchmark script of the checkout with a progress bar over its runs.

The benchmark itself (``scripts/bench_core.py``) stays a plain script so the performance work can
evolve it; this wrapper only finds it, shows where it is, and passes its report through.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_core.py"
COMPARE_SCRIPT = SCRIPT.with_name("bench_compare.py")
RUN_LINE = re.compile(r"^bench: (ticket|broadcast) run (\d+)/(\d+)")


class BenchMissing(Exception):
    """The benchmark script is not there (Gru was installed without its checkout)."""


def planned_runs(argv: list[str]) -> int | None:
    """How many runs the script will make with these options; None when it will not run (e.g. --help)."""
    if not SCRIPT.is_file():
        raise BenchMissing(f"{SCRIPT} not found: gru bench runs from a Gru checkout")
    spec = importlib.util.spec_from_file_location("gru_bench_core", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        args = module.parse_args(argv)
    except SystemExit:
        return None
    return args.repeat * (1 if args.skip else 2)


def run_bench(argv: list[str], verbose: bool = False) -> int:
    """Run the script; the bar advances as each run starts and ends. Return the script's exit code."""
    total = planned_runs(argv)
    command = [sys.executable, str(SCRIPT), *argv]
    if total is None:  # --help or bad options: let the script speak for itself
        return subprocess.run(command).returncode
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    started = 0
    with click.progressbar(length=total, label="starting", file=sys.stderr, show_pos=True) as bar:
        for line in proc.stderr:
            match = RUN_LINE.match(line)
            if match:
                bar.update(1 if started else 0)
                started += 1
                bar.label = f"{match.group(1)} run {match.group(2)}/{match.group(3)}"
            elif verbose or "FAILED" in line or "rror" in line:
                click.echo(f"\n{line.rstrip()}", err=True)
        report = proc.stdout.read()
        code = proc.wait()
        if code != 2:
            bar.update(total - bar.pos)
    click.echo(report, nl=False)
    return code


def run_compare(argv: list[str]) -> int:
    """Run the side-by-side comparison with Node (``scripts/bench_compare.py``, its own progress bar)."""
    if not COMPARE_SCRIPT.is_file():
        raise BenchMissing(f"{COMPARE_SCRIPT} not found: gru bench runs from a Gru checkout")
    return subprocess.run([sys.executable, str(COMPARE_SCRIPT), *argv], cwd=COMPARE_SCRIPT.parents[1]).returncode
