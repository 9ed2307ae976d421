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
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.procs import free_port, running, spawn, stop, unprivileged, wait_until

ROLE = "acgs"


def _binaries() -> Path | None:
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parts[-3].isdigit()]
    newest = max(versions, key=lambda p: int(p.parts[-3]), default=None)
    return newest.parent if newest else None


class PostgresServer:
    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        #: Benchmarks of durable commits run with fsync on; tests keep it off.
        self.durable = durable
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="acgs-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://{ROLE}@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"

    def start(self) -> None:
        drop = unprivileged("ACGS_TEST_PG_USER")
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
        self.log.touch()
        if drop:
            os.chown(self.log, drop["user"], drop["group"])
        self.proc = spawn(
            [
                str(self.bindir / "postgres"),
                "-D", str(self.data),
                "-p", str(self.port),
                "-k", str(self.root),
                "-c", "listen_addresses=127.0.0.1",
                *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
                "-c", "max_connections=200",
            ],
            self.log,
            env=env,
            cwd=self.root,
            **drop,
        )
        ready = [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE]
        wait_until(
            lambda: subprocess.run(ready, capture_output=True).returncode == 0,
            what="postgres",
            timeout=60,
            runner=self.proc,
            log=self.log,
            interval=0.1,
        )

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, name],
            check=True,
            capture_output=True,
        )
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        stop(self.proc, signal.SIGINT, grace=30)  # fast shutdown: roll back and exit
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _binaries()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found (scripts/setup.sh installs the Debian package postgresql)")
    server = PostgresServer(bindir)
    with running(server, "a throwaway PostgreSQL"):
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the session's throwaway PostgreSQL server (its ``postgres`` database)."""
    return postgres_server.url


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """URL of a database of its own for one test, on the session's server."""
    return postgres_server.create_database()
