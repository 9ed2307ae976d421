"""Fixtures shared by every test directory: a throwaway PostgreSQL server (``postgres_url``,
``postgres_database``; see tests/services/pg.py), the host names the in-process clients use
(``ACGS_ALLOWED_HOSTS``), a signed audit log of the test's own process (``audit_log``) and a
real Redis server for a test module (``redis``)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from acgs.audit import AuditLog

if TYPE_CHECKING:
    from tests.services.conftest import RedisServer

pytest_plugins = ["tests.services.pg"]

#: The names the in-process test clients put in ``Host`` (Starlette's TestClient sends
#: ``testserver``; the httpx clients name the service they call). The services accept only
#: loopback names unless configured otherwise, so the tests configure theirs.
TEST_HOSTS = "testserver,policy,audit,sandbox,evolution,evolution.test,e.test,acgs.test"


@pytest.fixture(autouse=True)
def test_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_ALLOWED_HOSTS", TEST_HOSTS)


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditLog]:
    """A signed SQLite audit log in this process (the guard's and its adapters' tests read the
    events their calls left there, and verify the chain)."""
    from tests.services.audit_helpers import make_log

    log = make_log(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    asyncio.run(log.open())
    yield log
    asyncio.run(log.close())


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator["RedisServer"]:
    """A real Redis server (``redis-server``) on a loopback port for the test module."""
    from tests.services.conftest import RedisServer
    from tests.services.procs import running

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    with running(server, "redis-server"):
        yield server
