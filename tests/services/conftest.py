"""Fixtures for service tests: a real redis-server on a free loopback port, a real uvicorn in a
thread, and an httpx client bound to an app in-process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.services.procs import free_port, running, spawn, stop, wait_until


class RedisServer:
    """One redis-server process that a test can kill, freeze and start again on the same port;
    its output goes to ``redis-server.log`` in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
        self.binary = binary
        self.workdir = workdir
        self.log = workdir / "redis-server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _answers_ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def start(self) -> None:
        self.proc = spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            self.log,
        )  # fmt: skip
        wait_until(self._answers_ping, what="redis-server", timeout=10, runner=self.proc, log=self.log, interval=0.02)

    def stop(self) -> None:
        stop(self.proc, signal.SIGKILL, grace=5)
        self.proc = None

    def freeze(self) -> None:
        """The process stays, its socket accepts, nothing answers: a hung Redis."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)

    def thaw_and_stop() -> None:
        if server.proc is not None:
            server.thaw()
        server.stop()

    with running(server, "redis-server", cleanup=thaw_and_stop):
        yield server


class ServerThread:
    """uvicorn serving an app on a loopback port (``port``, or a free one) from a thread, as in
    production but in-process; ``options`` go to ``uvicorn.Config`` (TLS, for one)."""

    def __init__(self, app: FastAPI, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, what="uvicorn", timeout=15, runner=self.thread, interval=0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://policy") as client:
        yield client
