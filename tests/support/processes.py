"""Start and stop real server processes for tests (gunicorn on loopback)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
GEVENT_WS_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Block until `url` answers with any HTTP status; fail early if `proc` dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # 4xx/5xx still means the server is up
        except OSError as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s (last error: {last_error})")


class ServerHandle:
    """A running server subprocess; its stdout+stderr go to `log_path`."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, temp_files: Sequence[Path] = ()) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._temp_files = list(temp_files)  # deleted by stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's process group (master + workers), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            pgid = self.proc.pid  # started with start_new_session=True
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server, then remove the temp files.

        Temp files that start_gunicorn created itself (log, empty config) are removed;
        pass log_path to start_gunicorn to keep the log.
        """
        self.terminate(timeout)
        for path in self._temp_files:
            path.unlink(missing_ok=True)
        self._temp_files = []


def start_gunicorn(
    app_spec: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    worker_class: str = GEVENT_WS_WORKER,
    workers: int = 1,
    config: str | os.PathLike | None = None,
    graceful_timeout: int | None = 2,
    extra_args: Sequence[str] = (),
    log_path: str | os.PathLike | None = None,
    timeout: float = 20.0,
) -> ServerHandle:
    """Run `gunicorn app_spec` from the repo root and wait until it answers HTTP.

    `env` is added on top of os.environ. With `config=None` an empty config is
    used, so the repo's ./gunicorn.conf.py (gunicorn's default) is NOT picked up;
    pass config="gunicorn.conf.py" to test the real deployment settings.
    `graceful_timeout` is short by default: gunicorn otherwise waits up to 30s
    for open socket.io connections (websocket or long-poll) on SIGTERM.
    On startup failure the tail of the server log is included in the error.
    """
    port = port or free_port()
    temp_files: list[Path] = []
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
        os.close(fd)
        log_path = name
        temp_files.append(Path(name))
    log_path = Path(log_path)
    if config is None:
        fd, name = tempfile.mkstemp(prefix="gunicorn-empty-", suffix=".conf.py")
        os.close(fd)  # an empty file is a valid (empty) gunicorn config
        config = name
        temp_files.append(Path(name))
    cmd = [
        str(GUNICORN),
        "-c", str(config),
        "-k", worker_class,
        "--no-control-socket",
        "-b", f"127.0.0.1:{port}",
        "-w", str(workers),
        *(["--graceful-timeout", str(graceful_timeout)] if graceful_timeout is not None else []),
        *extra_args,
        app_spec,
    ]
    inherited = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"}
    full_env = {**inherited, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    handle = ServerHandle(proc, port, log_path, temp_files)
    try:
        wait_http(handle.url + "/", timeout, proc)
    except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        handle.terminate(timeout=2)  # let the dying server finish writing its log
        tail = handle.log_tail()
        handle.stop()  # removes the temp files
        raise RuntimeError(
            f"gunicorn {app_spec} failed to start: {exc}\n"
            f"command: {' '.join(cmd)}\n--- server log (tail) ---\n{tail}"
        ) from exc
    return handle
