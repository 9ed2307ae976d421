"""A throwaway PostgreSQL server for tests, shared by every service's tests.

``postgres_url`` (session scope) starts one server: ``initdb`` into a fresh temporary directory,
then ``postgres`` on a free port on 127.0.0.1 with its socket in that directory, ``trust``
authentication for the role ``acgs``, and fsync off (the server is thrown away). It yields
``postgresql://acgs@127.0.0.1:PORT/postgres`` and stops the server afterwards.
``postgres_database`` (function scope) creates a fresh database on it per test and yields its URL.

PostgreSQL refuses to run as root: when the tests run as root, initdb and postgres run as the
unprivileged user ``nobody`` (``ACGS_TEST_PG_USER`` names another), and the data directory is
given to that user. The binaries are looked up on PATH and then in
``/usr/lib/postgresql/<version>/bin``; without them (Debian package ``postgresql``, which
scripts/setup.sh installs) the tests that need the server fail rather than pass untested.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROLE = "acgs"


def _binaries() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parts[-3].isdigit()]
    newest = max(versions, key=lambda p: int(p.parts[-3]), default=None)
    return newest.parent if newest else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root for PostgreSQL; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam(os.environ.get("ACGS_TEST_PG_USER", "nobody"))
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class PostgresServer:
    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        #: Benchmarks of durable commits run with fsync on; tests keep it off.
        self.durable = durable
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="acgs-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.url = f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"

    def start(self) -> None:
        drop = _unprivileged()
        if drop:
            os.chown(self.root, drop["user"], drop["group"])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", ROLE, "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            env=env,
            cwd=self.root,
            **drop,
        )
        log = open(self.log, "wb")  # noqa: SIM115 - handed to the server process
        if drop:
            os.chown(self.log, drop["user"], drop["group"])
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D", str(self.data),
                "-p", str(self.port),
                "-k", str(self.root),
                "-c", "listen_addresses=127.0.0.1",
                *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
                "-c", "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
            **drop,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log.read_text()}")
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not become ready:\n{self.log.read_text()}")

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, name],
            check=True,
            capture_output=True,
        )
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: roll back and exit
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _binaries()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found (scripts/setup.sh installs the Debian package postgresql)")
    server = PostgresServer(bindir)
    try:
        server.start()
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        server.stop()
        detail = exc.stderr.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        pytest.fail(f"could not start a throwaway PostgreSQL: {detail}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the session's throwaway PostgreSQL server (its ``postgres`` database)."""
    return postgres_server.url


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """URL of a database of its own for one test, on the session's server."""
    return postgres_server.create_database()
