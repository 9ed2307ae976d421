"""Fixtures shared by every test directory: a throwaway PostgreSQL server (``postgres_url``,
``postgres_database``; see tests/services/pg.py) and the host names the in-process clients use
(``ACGS_ALLOWED_HOSTS``)."""

import pytest

pytest_plugins = ["tests.services.pg"]

#: The names the in-process test clients put in ``Host`` (Starlette's TestClient sends
#: ``testserver``; the httpx clients name the service they call). The services accept only
#: loopback names unless configured otherwise, so the tests configure theirs.
TEST_HOSTS = "testserver,policy,audit,sandbox,evolution,evolution.test,e.test,acgs.test"


@pytest.fixture(autouse=True)
def test_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_ALLOWED_HOSTS", TEST_HOSTS)
