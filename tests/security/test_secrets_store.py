"""Secrets from a secrets store, through real parts: the audit service (a real process) signs
with a key and writes to a real PostgreSQL whose role needs a password, both named by ``file:``
or ``env:`` references; a rotated webhook secret signs the next delivery to a real receiver on
loopback that checks signatures; and what a client sends is never resolved as a reference.

References come from the operator's configuration only (``ACGS_*`` variables and the
configuration file): no route, header or event field is ever passed to the resolver, so a client
writing ``env:ACGS_AUDIT_SIGNING_KEY`` into a field stores that text and learns nothing.

The Vault backend cannot be tested here (no Vault or OpenBao binary installs on this machine);
tests/test_secrets_vault.py runs it against ``vault server -dev`` / ``bao server -dev`` where
one is on PATH."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from acgs import _acgs as core
from acgs.security.settings import SecuritySettings
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution.app import create_app as evolution_app
from acgs.services.evolution.webhooks import verify_signature
from acgs.services.policy.settings import PolicySettings
from tests.services.audit_helpers import AuditProcess, service_env
from tests.services.procs import free_port, ports_open, spawn, wait_until
from tests.services.pg import PostgresServer, _binaries
from tests.services.test_evolution_service import SEED, reviewer

APP_ROLE = "acgs_app"

# -- PostgreSQL whose application role needs its password ----------------------------------------


@dataclass
class PasswordPostgres:
    server: PostgresServer
    password: str
    database: str = "acgs_secrets"

    def url(self, password: str) -> str:
        return f"postgresql://{APP_ROLE}:{password}@127.0.0.1:{self.server.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"{self.server.url.rsplit('/', 1)[0]}/{self.database}"

    def fresh(self) -> PasswordPostgres:
        """The same server and role with a new database of the role's own (one log per test)."""
        name = f"acgs_{secrets.token_hex(6)}"

        async def create() -> None:
            conn = await asyncpg.connect(self.server.url)
            try:
                await conn.execute(f"CREATE DATABASE {name} OWNER {APP_ROLE}")
            finally:
                await conn.close()

        asyncio.run(create())
        return PasswordPostgres(self.server, self.password, name)


@pytest.fixture
def password_pg(password_pg_server: PasswordPostgres) -> PasswordPostgres:
    return password_pg_server.fresh()


@pytest.fixture(scope="module")
def password_pg_server() -> Iterator[PasswordPostgres]:
    """A throwaway server (tests/services/pg.py) on which the role ``acgs_app`` has a password
    and TCP logins of every role but the fixture's own admin must give theirs (scram-sha-256)."""
    bindir = _binaries()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found (scripts/setup.sh installs the Debian package postgresql)")
    server = PostgresServer(bindir)
    server.start()
    password = "pw-" + secrets.token_urlsafe(18) + "@:/%"  # characters a URL must encode
    try:

        async def prepare() -> None:
            conn = await asyncpg.connect(server.url)
            try:
                await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD $pw${password}$pw$")
                await conn.execute(f"CREATE DATABASE acgs_secrets OWNER {APP_ROLE}")
            finally:
                await conn.close()

        asyncio.run(prepare())
        hba = server.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all acgs 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)  # reload pg_hba.conf
        pg = PasswordPostgres(server, password)

        async def enforced() -> bool:
            try:
                conn = await asyncpg.connect(pg.url("not-the-password"))
            except asyncpg.InvalidPasswordError:
                return True
            await conn.close()
            return False

        deadline = time.monotonic() + 10
        while not asyncio.run(enforced()):
            assert time.monotonic() < deadline, "PostgreSQL did not start asking for passwords"
            time.sleep(0.1)
        yield pg
    finally:
        server.stop()


def _admin(pg: PasswordPostgres, sql: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(pg.admin_url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


# -- the audit service: signing key and database password from the store -------------------------


def _audit_env(tmp_path: Path, pg: PasswordPostgres, backend: str, private_key: str) -> dict[str, str]:
    env = service_env(tmp_path / "data", "unused")
    env["ACGS_SECRETS_TTL"] = "30"
    if backend == "file":
        key_file = tmp_path / "store" / "audit-signing.key"
        key_file.parent.mkdir()
        key_file.write_text(private_key + "\n")
        key_file.chmod(0o600)
        password_file = tmp_path / "store" / "pg-password"
        password_file.write_text(pg.password + "\n")
        env["ACGS_AUDIT_SIGNING_KEY"] = f"file:{key_file}"
        env["ACGS_AUDIT_DATABASE_URL"] = pg.url(f"{{file:{password_file}}}")
        env["ACGS_SECRETS_FILE_ROOTS"] = str(key_file.parent)
    else:
        env["ACGS_TEST_STORE_AUDIT_KEY"] = private_key
        env["ACGS_TEST_STORE_DB_URL"] = pg.url(quote(pg.password, safe=""))
        env["ACGS_AUDIT_SIGNING_KEY"] = "env:ACGS_TEST_STORE_AUDIT_KEY"
        env["ACGS_AUDIT_DATABASE_URL"] = "env:ACGS_TEST_STORE_DB_URL"
    return env


#: Fields a client controls, written as references to the service's own secrets.
BAIT: dict[str, Any] = {
    "agent_id": "env:ACGS_TEST_STORE_AUDIT_KEY",
    "action": "env:ACGS_AUDIT_SIGNING_KEY",
    "metadata": {"db": "{env:ACGS_TEST_STORE_DB_URL}", "key": "file:/proc/self/environ", "vault": "vault:secret/acgs#key"},
}


@pytest.mark.parametrize("backend", ["file", "env"])
def test_audit_service_signs_with_the_stored_key_and_writes_with_the_stored_password(
    backend: str, password_pg: PasswordPostgres, tmp_path: Path
) -> None:
    private, verifier = core.generate_signing_key(f"secrets-{backend}.test/audit")
    env = _audit_env(tmp_path, password_pg, backend, private)
    proc = AuditProcess(free_port(), env, tmp_path / "audit.log")
    proc.start()
    try:
        marker = f"secrets-{backend}-{secrets.token_hex(4)}"
        events = [
            {
                "event_type": "policy_decision",
                "agent_id": f"agent-{i}",
                "action": "data.read",
                "result": "allow",
                "decision_id": marker,
            }
            for i in range(3)
        ]
        events.append({"event_type": "policy_decision", "result": "deny", "decision_id": marker, **BAIT})
        r = httpx.post(f"{proc.url}/audit/events", json=events, timeout=10)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{proc.url}/audit/key", timeout=10).json()["verifier_key"] == verifier
        deadline = time.monotonic() + 20
        while True:
            cp = httpx.get(f"{proc.url}/audit/checkpoint", timeout=10)
            if cp.status_code == 200 and cp.json()["size"] >= 4:
                break
            assert time.monotonic() < deadline, cp.text
            time.sleep(0.2)
        # Signed by the key the store holds: the verifier derived from it accepts the checkpoint.
        _origin, size, _root = core.verify_checkpoint(cp.json()["checkpoint"], verifier)
        assert size >= 4
        _other_private, other_verifier = core.generate_signing_key(f"secrets-{backend}.test/audit")
        with pytest.raises(Exception):  # noqa: B017 - any verification failure of the core
            core.verify_checkpoint(cp.json()["checkpoint"], other_verifier)
        # Written through the password-protected role into the real database.
        rows = _admin(password_pg, f"SELECT count(*) FROM audit_events WHERE decision_id = '{marker}'")
        assert rows[0][0] == 4
        # The client's "references" were stored as the text they are; no secret came back.
        page = httpx.get(f"{proc.url}/audit/events", params={"limit": 1000}, timeout=10).text
        bait = [v["event"] for v in json.loads(page)["events"] if v["event"].get("action") == BAIT["action"]]
        assert len(bait) == 1 and bait[0]["agent_id"] == BAIT["agent_id"] and bait[0]["metadata"]["db"] == BAIT["metadata"]["db"]
        for secret_text in (private, private.split("+", 4)[4], password_pg.password):
            assert secret_text not in page
    finally:
        proc.stop()
    log = (tmp_path / "audit.log").read_text()
    assert private not in log and password_pg.password not in log


def test_audit_service_does_not_start_without_its_stored_secrets(password_pg: PasswordPostgres, tmp_path: Path) -> None:
    private, _verifier = core.generate_signing_key("secrets-missing.test/audit")
    # The signing key's file is missing: no start, and no key generated in its place.
    env = _audit_env(tmp_path, password_pg, "file", private)
    missing = tmp_path / "store" / "rotated-away.key"
    env["ACGS_AUDIT_SIGNING_KEY"] = f"file:{missing}"
    proc = AuditProcess(free_port(), env, tmp_path / "missing-key.log")
    with pytest.raises(RuntimeError, match="exited"):
        proc.start(timeout=60)
    log = (tmp_path / "missing-key.log").read_text()
    assert f"secret file:{missing}: no such file" in log
    assert not (tmp_path / "data" / "audit-signing.key").exists()

    # A key file outside the allowed roots is refused even though it exists.
    outside = tmp_path / "outside.key"
    outside.write_text(private)
    env["ACGS_AUDIT_SIGNING_KEY"] = f"file:{outside}"
    proc = AuditProcess(free_port(), env, tmp_path / "outside.log")
    with pytest.raises(RuntimeError, match="exited"):
        proc.start(timeout=60)
    assert "outside ACGS_SECRETS_FILE_ROOTS" in (tmp_path / "outside.log").read_text()

    # The store holds a wrong database password: PostgreSQL refuses, the service does not start.
    env["ACGS_AUDIT_SIGNING_KEY"] = f"file:{tmp_path / 'store' / 'audit-signing.key'}"
    wrong = "wrong-" + secrets.token_hex(8)
    (tmp_path / "store" / "pg-password").write_text(wrong)
    proc = AuditProcess(free_port(), env, tmp_path / "wrong-password.log")
    with pytest.raises(RuntimeError, match="exited|healthy"):
        proc.start(timeout=60)
    proc.stop()
    log = (tmp_path / "wrong-password.log").read_text()
    assert "password authentication failed" in log
    assert wrong not in log and private not in log


# -- the webhook secret: rotation signs the next delivery ----------------------------------------


class VerifyingReceiver:
    """A webhook endpoint on loopback that checks each signature with the secret it holds now,
    as a real receiver does: 204 when it verifies, 401 when it does not."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.accepted: list[tuple[str, str, bytes]] = []  # (secret that verified, signature, body)
        self.rejected = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature = self.headers.get("X-ACGS-Signature") or ""
                with outer.lock:
                    ok = verify_signature(outer.secret, signature, body)
                    if ok:
                        outer.accepted.append((outer.secret, signature, body))
                    else:
                        outer.rejected += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> VerifyingReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate(self, secret: str) -> None:
        with self.lock:
            self.secret = secret

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for webhook deliveries"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _evolution(tmp_path: Path, settings: dict[str, Any]) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = evolution_app(
        EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evo.sqlite3'}", sweep_interval=3600.0).replace(
            **settings
        )
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://evolution.test") as client:
            yield app, client


@pytest.mark.parametrize("ttl", ["0", "30"])
def test_rotated_webhook_secret_signs_the_next_delivery(
    ttl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password_pg: PasswordPostgres
) -> None:
    """TTL 0: the store is read before every delivery, so the first delivery after the rotation
    carries the new signature. TTL 30: the cached secret signs once more, the receiver (already
    rotated) answers 401, and the relay reads the store at once and signs the retry anew. The
    evolution service's own database password comes from the store too (``env:``)."""
    monkeypatch.setenv("ACGS_SECRETS_TTL", ttl)
    monkeypatch.setenv("ACGS_TEST_STORE_PG_PASSWORD", password_pg.password)
    old, new = "whsec-old-" + secrets.token_hex(16), "whsec-new-" + secrets.token_hex(16)
    store = tmp_path / "webhook-secret"
    store.write_text(old + "\n")
    monkeypatch.setenv("ACGS_TEST_STORE_WEBHOOK", old)
    request = dict(SEED)
    # Client-controlled fields naming the secret by reference: sent on as text, never resolved.
    request["agent_id"] = "env:ACGS_TEST_STORE_WEBHOOK"
    request["justification"] = f"file:{store} {{env:ACGS_TEST_STORE_WEBHOOK}}"
    request["submitter"] = "env:ACGS_EVOLUTION_WEBHOOK_SECRET"

    async def scenario() -> None:
        with VerifyingReceiver(old) as receiver:
            settings = {
                "webhook_urls": (receiver.url,),
                "webhook_secret": f"file:{store}",
                "relay_interval": 0.05,
                "database_url": password_pg.url("{env:ACGS_TEST_STORE_PG_PASSWORD}"),
            }
            async with _evolution(tmp_path, settings) as (app, client):
                hook = app.state.webhooks[0]
                r = await client.post("/evolution/request", json=request)
                assert r.status_code == 201, r.text
                rid = r.json()["request_id"]
                rids.append(rid)
                await _until(lambda: receiver.count() >= 1 and hook.delivered >= 1)
                await asyncio.sleep(0.3)  # nothing else is on its way
                assert receiver.count() == hook.delivered == 1 and receiver.rejected == 0

                # Rotation: the store and the receiver change together.
                store.write_text(new + "\n")
                receiver.rotate(new)
                before = receiver.count()
                r = await client.post(
                    f"/evolution/requests/{rid}/approve", json={"reason": "ok"}, headers=reviewer("rita@example.com")
                )
                assert r.status_code == 200, r.text
                await _until(lambda: receiver.count() > before)
                after = receiver.accepted[before:]
                assert after and all(secret == new for secret, _sig, _body in after)
                for _secret, signature, body in after:
                    assert verify_signature(new, signature, body) and not verify_signature(old, signature, body)
                assert receiver.rejected == (0 if ttl == "0" else 1)

                bodies = [body for _secret, _sig, body in receiver.accepted]
                first = json.loads(bodies[0])
                assert first["agent_id"] == "env:ACGS_TEST_STORE_WEBHOOK"
                assert first["event"]["agent_id"] == "env:ACGS_TEST_STORE_WEBHOOK"
                for body in bodies:
                    assert old.encode() not in body and new.encode() not in body
                got = await client.get(f"/evolution/requests/{rid}")
                assert got.status_code == 200 and old not in got.text and new not in got.text

    rids: list[str] = []
    asyncio.run(scenario())
    # The request was written through the password-protected role.
    rows = _admin(password_pg, f"SELECT count(*) FROM evolution_requests WHERE request_id = '{rids[0]}'")
    assert rows[0][0] == 1


def test_webhook_delivery_waits_while_the_secret_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret disappears from the store: nothing is sent (no unsigned or empty-key
    delivery); once it is back, the waiting event goes out signed."""
    monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
    secret = "whsec-" + secrets.token_hex(16)
    store = tmp_path / "webhook-secret"
    store.write_text(secret)

    async def scenario() -> None:
        with VerifyingReceiver(secret) as receiver:
            settings = {"webhook_urls": (receiver.url,), "webhook_secret": f"file:{store}", "relay_interval": 0.05}
            async with _evolution(tmp_path, settings) as (app, client):
                hook = app.state.webhooks[0]
                store.unlink()
                r = await client.post("/evolution/request", json=SEED)
                assert r.status_code == 201, r.text
                await _until(lambda: hook.failures >= 1)
                assert receiver.count() == 0 and receiver.rejected == 0  # nothing was sent at all
                assert hook.last_error is not None and f"file:{store}" in hook.last_error
                store.write_text(secret)
                await _until(lambda: receiver.count() >= 1, timeout=60)
                assert receiver.rejected == 0

    asyncio.run(scenario())


def test_webhook_urls_are_not_references() -> None:
    with pytest.raises(ValueError, match="not an http"):
        EvolutionSettings(webhook_urls=("env:ACGS_EVOLUTION_WEBHOOK_SECRET",), webhook_secret="x")


# -- the Redis URL: its password from the store ----------------------------------------------------


def test_redis_password_from_the_store_opens_a_real_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ACGS_REDIS_URL`` with ``{file:...}`` as its password: the settings every service reads
    hold a URL a real Redis that requires the password accepts; a wrong stored password does not
    get in."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
    password = "redis-" + secrets.token_urlsafe(16) + "@/:"
    port = free_port()
    log = tmp_path / "redis-server.log"
    proc = spawn(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password],
        log,
        cwd=tmp_path,
    )
    try:
        wait_until(ports_open(port), what="redis-server", timeout=10, runner=proc, log=log, interval=0.02)
        store = tmp_path / "redis-password"
        store.write_text(password + "\n")
        monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
        env = {"ACGS_REDIS_URL": f"redis://:{{file:{store}}}@127.0.0.1:{port}/0"}
        for settings in (SecuritySettings.from_env(env), PolicySettings.from_env(env)):
            assert settings.redis_url is not None and password not in repr(settings.public())
            client = Redis.from_url(settings.redis_url, socket_timeout=2)
            assert client.ping() is True
            client.close()
        store.write_text("not-the-password")
        client = Redis.from_url(PolicySettings.from_env(env).redis_url or "", socket_timeout=2)
        with pytest.raises((AuthenticationError, ResponseError)):
            client.ping()
        client.close()
    finally:
        proc.kill()
        proc.wait(5)
