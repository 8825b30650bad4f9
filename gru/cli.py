"""The ``gru`` command: run the service, check a deployment."""

from __future__ import annotations

import os
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
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(bind: str | None, workers: int | None, gunicorn_args: tuple[str, ...]) -> None:
    """Run the service under gunicorn with the gevent-websocket worker.

    Without GRU_REDIS_URL this is the embedded default: one process, state in memory.
    Extra arguments after -- are passed to gunicorn.
    """
    env = dict(os.environ)
    if bind:
        env["GRU_BIND"] = bind
    if workers:
        env["GRU_WORKERS"] = str(workers)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(PACKAGE_DIR / "gunicorn_conf.py"), *gunicorn_args,
            "gru.wsgi:app"]
    os.execvpe(argv[0], argv, env)


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


if __name__ == "__main__":
    main()
