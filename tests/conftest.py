"""Fixtures shared by every test directory: a throwaway PostgreSQL server (``postgres_url``,
``postgres_database``; see tests/services/pg.py), the host names the in-process clients use
(``ACGS_ALLOWED_HOSTS``) and a signed audit log of the test's own process (``audit_log``)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from acgs.audit import AuditLog

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
