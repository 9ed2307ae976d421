"""Throwaway servers for tests, started one way: a free loopback port, a process whose output is
appended to its own log file, a wait for it to be ready with a deadline, and a stop that kills
what does not exit in time. A server that dies or does not get ready fails with its log's path
and tail, and the fixtures that start one turn that into a test failure with the reason.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

#: How much of a server's log a failure quotes.
LOG_TAIL = 3000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unprivileged(user_variable: str) -> dict[str, Any]:
    """``Popen`` arguments that run a server as ``nobody`` (or the user the environment variable
    ``user_variable`` names) when the tests run as root, for servers that refuse root; nothing
    otherwise."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(os.environ.get(user_variable, "nobody"))
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def spawn(command: Sequence[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Starts ``command`` with its stdout and stderr appended to ``log`` (a restart keeps what
    the previous run wrote)."""
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)


def _log_tail(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f" (its log {log} cannot be read: {exc})"
    return f" (log: {log}):\n{text[-LOG_TAIL:]}"


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    runner: subprocess.Popen[bytes] | threading.Thread | None = None,
    log: Path | None = None,
    interval: float = 0.05,
    state: str = "ready",
) -> None:
    """Polls ``ready`` until it is true; a ``ready`` that raises ``OSError`` or an httpx error
    counts as not yet. Raises ``RuntimeError`` naming ``what`` and its log as soon as ``runner``
    (the server's process or thread) has ended, or once ``timeout`` seconds have passed
    ("``what`` did not become ``state``")."""
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(runner, subprocess.Popen) and runner.poll() is not None:
            raise RuntimeError(f"{what} exited with {runner.returncode}{_log_tail(log)}")
        if isinstance(runner, threading.Thread) and not runner.is_alive():
            raise RuntimeError(f"{what} stopped before it became {state}{_log_tail(log)}")
        with contextlib.suppress(OSError, httpx.HTTPError):
            if ready():
                return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what} did not become {state} within {timeout:g} s{_log_tail(log)}")
        time.sleep(interval)


def ports_open(*ports: int) -> Callable[[], bool]:
    """A readiness check: every one of ``ports`` on 127.0.0.1 accepts a connection."""

    def check() -> bool:
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True

    return check


def answers_200(url: str) -> Callable[[], bool]:
    """A readiness check: a GET of ``url`` is answered with 200."""
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Sends ``sig`` to a process that still runs and waits ``grace`` seconds for it to exit,
    then kills it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill9(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL, as a crash would end the process, and reap it."""
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


class Server(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def running(server: Server, what: str, *, cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Starts ``server`` for the body and stops it afterwards (``cleanup``, when given, instead
    of ``server.stop``). A server that cannot start fails the test with the reason: a missing or
    broken server is a failure, never a pass."""
    done = cleanup or server.stop
    try:
        server.start()
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        done()
        detail = exc.stderr.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        pytest.fail(f"could not start {what}: {detail}")
    try:
        yield
    finally:
        done()


class ServiceProcess:
    """One of the ACGS services as its own process (``python -m <module>``) on a loopback port,
    its output in ``log_path``; it can be killed and started again on the same port."""

    def __init__(self, module: str, what: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.what = what
        self.port = port
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port)]

    def spawn(self) -> None:
        """Starts the process without waiting for it (several may load at once)."""
        self.proc = spawn(self.command(), self.log_path, env=self.env)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        ready = answers_200(f"{self.url}/health")
        wait_until(ready, what=self.what, timeout=timeout, runner=self.proc, log=self.log_path, state="healthy")

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_healthy(timeout)

    def kill9(self) -> None:
        kill9(self.proc)

    def stop(self) -> None:
        stop(self.proc)
