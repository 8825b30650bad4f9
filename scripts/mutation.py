"""Mutation testing of the modules that hold Gru's guarantees, bounded in time.

A mutant is a small deliberate bug (``<`` for ``<=``, a constant changed, a condition dropped)
made by cosmic-ray in one module; the tests that guard that module then run against it. A mutant
the tests notice is *killed*; one they do not notice *survives*: a test is missing, or the mutant
is equivalent (it behaves like the original, e.g. ``x >= 1`` for ``x > 0`` on integers).

Mutants are made in a throw-away copy of the working tree, never in place (tests running in the
tree meanwhile would see them), and each module runs only its fast tests. Not part of ``make test``:

    .venv/bin/python scripts/mutation.py --quick         # a fixed sample per module: CI-size, minutes
    .venv/bin/python scripts/mutation.py                 # every mutant, within --budget seconds
    .venv/bin/python scripts/mutation.py -m limits -m hold --show-survivors

The score of a module is killed / (killed + survived); mutants left unrun when the budget is spent
are counted apart. Surviving mutants are listed with their diff (``--show-survivors``).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Target:
    """One module to mutate, the tests that guard it, and (optionally) the only functions to mutate."""

    name: str
    path: str
    tests: tuple[str, ...]
    definitions: frozenset[str] = frozenset()


TARGETS = [
    Target("limits", "gru/services/limits.py",
           ("tests/test_guarantees.py", "-k", "bucket or burst or admits or capped or clock_starts or twice_its "
                                              "or forgotten")),
    Target("hold", "gru/sockets/hold.py", ("tests/test_guarantees.py", "-k", "held_connection or late_copies")),
    Target("origins", "gru/config.py", ("tests/test_config.py",),
           frozenset({"origin_allowed", "cors_allowed", "_production_problems"})),
    Target("messaging", "gru/services/messaging.py", ("tests/test_services.py",)),
    Target("manager", "gru/sockets/manager.py", ("tests/test_manager.py", "tests/test_guarantees.py", "-k",
                                                 "relay or room or emit or subscriber")),
    Target("tokens", "gru/services/tokens.py", ("tests/test_tokens.py",)),
    Target("token1", "gru/services/token1.py", ("tests/test_token1.py", "-k", "not gets_401")),  # no server
    Target("redis-scripts", "gru/backends/redis.py", ("tests/test_backends.py",),
           frozenset({"allocate_id", "broadcast", "unicast", "_deadline", "history_append", "history_since",
                      "offline_take"})),
]


def copy_tree(destination: Path) -> None:
    """The working tree as git sees it (tracked and untracked, minus ignored files), without caches."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file() and "__pycache__" not in source.parts:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def write_config(workdir: Path, target: Target, timeout: float) -> Path:
    config = workdir / f"mutation-{target.name}.toml"
    command = " ".join([*PYTEST, *(_quote(arg) for arg in target.tests)])
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.path}"\n'
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {_toml_string(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n', encoding="utf-8")
    return config


def _quote(arg: str) -> str:
    return f"'{arg}'" if " " in arg else arg


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the type annotations are: with ``from __future__ import annotations`` they are never
    evaluated, so a mutant in one (``str | None`` to ``str % None``) is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        found = [getattr(node, "annotation", None), getattr(node, "returns", None)]
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found if a is not None]
    return spans


def select(session: Path, target: Target, sample: int | None, seed: int, source: str) -> int:
    """Skip mutants in annotations or outside ``target.definitions`` and, with ``sample``, all but a
    fixed random sample."""
    spans = annotation_spans(source)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        wanted = [i for i in items if (not target.definitions or i.mutations[0].definition_name in target.definitions)
                  and not any(start <= tuple(i.mutations[0].start_pos) < end for start, end in spans)]
        if sample is not None and len(wanted) > sample:
            wanted = random.Random(f"{seed}:{target.name}").sample(wanted, sample)
        keep = {item.job_id for item in wanted}
        skipped = [item.job_id for item in items if item.job_id not in keep]
        if skipped:
            db.set_multiple_results(skipped, WorkResult(output="not selected", worker_outcome=WorkerOutcome.SKIPPED))
        return len(keep)


def run(command: list[str], workdir: Path, env: dict, timeout: float) -> int | None:
    """Run ``command`` in its own process group; kill the whole group at ``timeout`` (``None`` returned)."""
    proc = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode != 0 and err:
        sys.stderr.write(err.decode(errors="replace")[-2000:])
    return proc.returncode


def tally(session: Path) -> tuple[dict[str, int], list[str]]:
    counts = {"killed": 0, "survived": 0, "incompetent": 0, "unrun": 0}
    survivors = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            result = results.get(item.job_id)
            if result is None:
                counts["unrun"] += 1
            elif result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                mutation = item.mutations[0]
                survivors.append(f"{mutation.module_path}:{mutation.start_pos[0]} {mutation.operator_name} "
                                 f"(in {mutation.definition_name})\n{result.diff or ''}")
            elif result.test_outcome == TestOutcome.KILLED:
                counts["killed"] += 1
            else:
                counts["incompetent"] += 1
    return counts, survivors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fixed sample of mutants per module (CI-size)")
    parser.add_argument("--sample", type=int, help="mutants per module (default: all; --quick: 12)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 1800; --quick: 480)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds for one mutant's tests (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    parser.add_argument("-m", "--module", action="append", choices=[t.name for t in TARGETS],
                        help="only these modules (repeatable)")
    parser.add_argument("--show-survivors", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--keep", action="store_true", help="keep the working copy and the session files")
    args = parser.parse_args()
    sample = args.sample if args.sample is not None else (12 if args.quick else None)
    deadline = time.monotonic() + (args.budget or (480 if args.quick else 1800))
    targets = [t for t in TARGETS if not args.module or t.name in args.module]

    workdir = Path(tempfile.mkdtemp(prefix="gru-mutation-"))
    copy_tree(workdir)
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    cosmic_ray = str(Path(sys.executable).with_name("cosmic-ray"))
    rows, failed = [], False
    try:
        for target in targets:
            session = workdir / f"mutation-{target.name}.sqlite"
            config = write_config(workdir, target, args.timeout)
            baseline = run([*PYTEST, *target.tests], workdir, env, min(args.timeout, deadline - time.monotonic()))
            if baseline != 0:
                print(f"{target.name}: its tests do not pass unmutated; fix them first", file=sys.stderr)
                failed = True
                continue
            run([cosmic_ray, "init", str(config), str(session)], workdir, env, 120)
            selected = select(session, target, sample, args.seed, (workdir / target.path).read_text(encoding="utf-8"))
            left = deadline - time.monotonic()
            if left > 0:
                run([cosmic_ray, "exec", str(config), str(session)], workdir, env, left)
            counts, survivors = tally(session)
            rows.append((target, selected, counts))
            print(_row(target, counts), flush=True)
            if args.show_survivors:
                for survivor in survivors:
                    print("  survived:", survivor.replace("\n", "\n    "))
    finally:
        if args.keep:
            print(f"working copy and sessions kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    killed = sum(c["killed"] for _, _, c in rows)
    survived = sum(c["survived"] for _, _, c in rows)
    if killed + survived:
        print(f"total: {killed}/{killed + survived} killed ({100 * killed / (killed + survived):.0f}%)")
    return 1 if failed else 0


def _row(target: Target, counts: dict[str, int]) -> str:
    judged = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / judged:.0f}%" if judged else "-"
    extra = "".join(f", {counts[k]} {k}" for k in ("incompetent", "unrun") if counts[k])
    return f"{target.name:14} {target.path:28} {counts['killed']:4} killed {counts['survived']:4} survived  " \
           f"score {score}{extra}"


if __name__ == "__main__":
    sys.exit(main())
