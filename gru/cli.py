"""The ``gru`` command: run the service, check a deployment, measure a worker."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

PACKAGE_DIR = Path(__file__).resolve().parent


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Gru: long-connection push service for classrooms."""


@main.command()
@click.option("--bind", help="HOST:PORT to listen on (default: GRU_BIND or 0.0.0.0:30000).")
@click.option("--workers", type=int, help="Number of gunicorn workers (default: GRU_WORKERS or 1).")
@click.option("--role", type=click.Choice(["all", "ticket", "node"]),
              help="all: ticket service and node in one; ticket or node: one part of a cluster, needs "
                   "GRU_REDIS_URL (default: GRU_ROLE or all).")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(bind: str | None, workers: int | None, role: str | None, gunicorn_args: tuple[str, ...]) -> None:
    """Run the service under gunicorn with the gevent-websocket worker.

    Without GRU_REDIS_URL this is the embedded default: one process, state in memory.
    Extra arguments after -- are passed to gunicorn.
    """
    env = dict(os.environ)
    if bind:
        env["GRU_BIND"] = bind
    if workers:
        env["GRU_WORKERS"] = str(workers)
    if role:
        env["GRU_ROLE"] = role
    argv = [sys.executable, "-m", "gunicorn", "-c", str(PACKAGE_DIR / "gunicorn_conf.py"), *gunicorn_args,
            "gru.wsgi:app"]
    os.execvpe(argv[0], argv, env)


@main.command()
@click.option("--nodes", default=3, show_default=True, help="Number of long-connection nodes.")
@click.option("--redis-url", envvar="GRU_REDIS_URL", help="Use this Redis instead of starting one.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every process binds to.")
@click.option("--ticket-port", default=30000, show_default=True)
@click.option("--first-node-port", default=11111, show_default=True, help="node_1's port; node_N adds 2 each.")
@click.option("--workers", default=1, show_default=True, help="gunicorn workers per process.")
def cluster(nodes: int, redis_url: str | None, host: str, ticket_port: int, first_node_port: int,
            workers: int) -> None:
    """Run a local deployment: Redis, a ticket service and N nodes, until Ctrl-C."""
    from gru.cluster import LocalCluster

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children on SIGTERM too
    local = LocalCluster(nodes=nodes, host=host, ticket_port=ticket_port, first_node_port=first_node_port,
                         redis_url=redis_url, workers=workers)
    try:
        local.start(echo=_say)
        _say(click.style(f"ready: tickets at http://{host}:{ticket_port}/ticket — Ctrl-C stops everything",
                         fg="green"))
        local.wait()
    except KeyboardInterrupt:
        click.echo("stopping...")
    except RuntimeError as exc:
        click.secho(f"FAIL: {exc}", fg="red", err=True)
        local.stop()
        sys.exit(1)
    local.stop()
    click.echo("stopped")


@main.command()
@click.argument("base_url")
@click.option("--token1", envvar="GRU_SMOKE_TOKEN1", help="token1 to present (default: signed with "
              "GRU_TOKEN1_SECRET when set, else 'smoke' for the accept verifier).")
@click.option("--token1-secret", envvar="GRU_TOKEN1_SECRET", help="Sign token1 with this key (hmac verifier).")
@click.option("--group", default="smoke", show_default=True, help="Group id the smoke users join.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for each answer.")
def smoke(base_url: str, token1: str | None, token1_secret: str | None, group: str, timeout: float) -> None:
    """Check a running deployment end to end: ticket, connect, auth, broadcast."""
    from gru.smoke import SmokeFailed, run_smoke

    try:
        run_smoke(base_url, token1=token1, token1_secret=token1_secret, group=group, timeout=timeout, echo=click.echo)
    except SmokeFailed as exc:
        click.secho(f"FAIL: {exc}", fg="red", err=True)
        sys.exit(1)
    click.secho("OK: all smoke checks passed", fg="green")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--verbose", is_flag=True, help="Show every line the benchmark logs, not only the progress bar.")
@click.option("--compare", is_flag=True, help="Compare with a Node socket.io 4 server running Gru's API "
              "(scripts/bench_compare.py: broadcast, unicast, connect, idle memory, mass disconnect).")
@click.argument("bench_args", nargs=-1, type=click.UNPROCESSED)
def bench(verbose: bool, compare: bool, bench_args: tuple[str, ...]) -> None:
    """Measure one worker: ticket requests/s and broadcast deliveries/s, with server CPU per unit.

    Runs scripts/bench_core.py of the Gru checkout (needs Node and node_modules, as set up by
    scripts/setup.sh dev); other options go to it, e.g. gru bench --repeat 3 --receivers 500,
    or gru bench --url http://127.0.0.1:30000 to measure a running node. gru bench -- --help lists
    them. Exits 1 if a message was lost or duplicated, 2 if a phase could not run.
    """
    from gru.bench import BenchMissing, run_bench, run_compare

    try:
        code = run_compare(list(bench_args)) if compare else run_bench(list(bench_args), verbose=verbose)
    except BenchMissing as exc:
        click.secho(f"FAIL: {exc}", fg="red", err=True)
        sys.exit(2)
    sys.exit(code)


def _say(message: str) -> None:
    """Print a line now, even when stdout is a pipe shared with the children's logs."""
    click.echo(message)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
