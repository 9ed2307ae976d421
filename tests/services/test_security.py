"""Identity, roles, rate limits and TLS on all four services (acgs.security), against the real
apps: API keys in a real SQLite (and PostgreSQL) key store, JWTs signed with HS256 and with a
freshly generated RSA key, buckets shared through a real redis-server, and uvicorn serving
mutual TLS on loopback with certificates made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.routing import APIRoute

from acgs.security import (
    ROLES,
    Gate,
    SecuritySettings,
    create_key,
    open_key_store,
    revoke_key,
    uvicorn_tls_options,
)
from acgs.security.access import UNLISTED
from acgs.security.cli import keys as keys_cli
from acgs.services.audit import AuditSettings
from acgs.services.audit import create_app as audit_app
from tests import apps
from tests.services.conftest import RedisServer, ServerThread
from tests.services.procs import free_port, stop
from tests.services.sandbox_fixtures import sandbox_service  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "python" / "acgs" / "bundles" / "example.tar.gz"
GOOD = {
    "action": "data.read_public",
    "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}},
}
ISSUER = "https://issuer.acgs.test"
AUDIENCE = "acgs-services"
HS_SECRET = "a-long-shared-secret-for-hs256-tokens-in-tests"


# -- credentials ------------------------------------------------------------------------------


@dataclass
class Credentials:
    data_dir: Path
    secret_file: Path
    public_key_file: Path
    private_key: rsa.RSAPrivateKey

    def settings(self, **overrides: Any) -> SecuritySettings:
        values: dict[str, Any] = {
            "auth": True,
            "data_dir": self.data_dir,
            "key_refresh": 60.0,
            "jwt_algorithms": ("HS256", "RS256"),
            "jwt_hs256_key_file": self.secret_file,
            "jwt_public_key_file": self.public_key_file,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
        }
        values.update(overrides)
        settings = SecuritySettings(**values)
        settings.validate()
        return settings

    async def key(self, name: str, *roles: str) -> str:
        _, token = await create_key(open_key_store(self.settings().resolved_key_store()), name, roles)
        return token

    def jwt(self, alg: str, roles: list[str], **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"sub": "svc-account", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "roles": roles}
        body.update(claims)
        key: Any = HS_SECRET if alg == "HS256" else self.private_key
        return jwt.encode(body, key, algorithm=alg)


@pytest.fixture
def creds(tmp_path: Path) -> Credentials:
    secret_file = tmp_path / "jwt.secret"
    secret_file.write_text(HS_SECRET + "\n")
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_key_file = tmp_path / "jwt.pub.pem"
    public_key_file.write_bytes(
        private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Credentials(data_dir, secret_file, public_key_file, private_key)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the four services ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One service and a route of it: the role it accepts, one it refuses, its success status."""

    service: str
    method: str
    path: str
    role: str
    wrong_role: str
    ok: int
    #: The top-level code of a 401 (OPA's on policy and audit).
    unauthenticated: str
    body: Any = None


TARGETS = [
    Target("policy", "POST", "/v1/data/acgs/example/allow", "agent", "reviewer", 200, "unauthorized", {"input": GOOD}),
    Target("evolution", "GET", "/evolution/review", "reviewer", "agent", 200, "unauthenticated"),
    Target("audit", "GET", "/audit/events", "auditor", "reviewer", 200, "unauthorized"),
    Target("sandbox", "GET", "/runtimes", "agent", "reviewer", 200, "unauthenticated"),
]


def build_app(target: str, security: SecuritySettings, tmp_path: Path, request: pytest.FixtureRequest) -> FastAPI:
    """The service's app (tests/apps.py); the policy service on the example bundle."""
    return apps.build_app(target, security, tmp_path, request, bundle=EXAMPLE)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        # A loopback name: the settings these tests build name no other host.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client:
            yield client


async def call(client: httpx.AsyncClient, target: Target, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.request(target.method, target.path, json=target.body, headers=headers or {})


def refusal(response: httpx.Response, status: int, code: str, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["message"], body
    assert body["errors"][0]["code"] == reason, body
    return body


def gate_of(app: FastAPI) -> Gate:
    gate = app.state.security_gate
    assert isinstance(gate, Gate)
    return gate


@pytest.fixture(params=TARGETS, ids=[t.service for t in TARGETS])
def target(request: pytest.FixtureRequest) -> Target:
    t: Target = request.param
    return t


# -- authentication and roles, on every service -------------------------------------------------


async def test_no_credentials_is_401_with_a_challenge_and_health_stays_open(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = build_app(target.service, creds.settings(), tmp_path, request)
    async with running(app) as client:
        r = await call(client, target)
        refusal(r, 401, target.unauthenticated, "missing_credentials")
        assert r.headers["www-authenticate"].startswith('Bearer realm="acgs"')
        # An unknown route does not tell an anonymous caller that it does not exist.
        refusal(await client.get("/no/such/route"), 401, target.unauthenticated, "missing_credentials")
        assert (await client.get("/health")).status_code in (200, 503)
        r = await call(client, target, bearer("acgs_000000000000_not-a-real-key"))
        refusal(r, 401, target.unauthenticated, "invalid_api_key")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_wrong_role_is_403_and_right_role_passes_with_an_api_key(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    right = await creds.key("right-one", target.role)
    wrong = await creds.key("wrong-one", target.wrong_role)
    admin = await creds.key("root", "admin")
    app = build_app(target.service, creds.settings(), tmp_path, request)
    async with running(app) as client:
        body = refusal(await call(client, target, bearer(wrong)), 403, "forbidden", "role_not_allowed")
        assert target.role in body["message"] and "wrong-one" in body["message"]
        assert (await call(client, target, bearer(right))).status_code == target.ok
        assert (await call(client, target, {"X-API-Key": right})).status_code == target.ok
        assert (await call(client, target, bearer(admin))).status_code == target.ok


async def test_jwt_hs256_and_rs256_with_the_right_role_pass(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = build_app(target.service, creds.settings(), tmp_path, request)
    async with running(app) as client:
        for alg in ("HS256", "RS256"):
            r = await call(client, target, bearer(creds.jwt(alg, [target.role])))
            assert r.status_code == target.ok, (alg, r.text)
            r = await call(client, target, bearer(creds.jwt(alg, [target.wrong_role])))
            refusal(r, 403, "forbidden", "role_not_allowed")


async def test_expired_wrong_audience_wrong_issuer_and_forged_jwts_are_401(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = build_app(target.service, creds.settings(), tmp_path, request)
    past = int(time.time()) - 3600
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with running(app) as client:
        cases = [
            (creds.jwt("RS256", [target.role], iat=past - 60, exp=past), "expired_token"),
            (creds.jwt("HS256", [target.role], iat=past - 60, exp=past), "expired_token"),
            (creds.jwt("RS256", [target.role], aud="someone-else"), "invalid_token"),
            (creds.jwt("HS256", [target.role], iss="https://elsewhere.test"), "invalid_token"),
            (jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "roles": [target.role]},
                        other_key, algorithm="RS256"), "invalid_token"),  # fmt: skip
            (jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "roles": [target.role]},
                        "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"), "invalid_token"),  # fmt: skip
            (jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "roles": [target.role]}, HS_SECRET, algorithm="HS256"),
             "invalid_token"),  # fmt: skip  (no exp)
            ("not.a.jwt", "invalid_token"),
        ]
        for token, reason in cases:
            r = await call(client, target, bearer(token))
            refusal(r, 401, target.unauthenticated, reason)
            assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_a_revoked_key_is_refused_once_the_store_is_reloaded(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = open_key_store(creds.settings().resolved_key_store())
    key, token = await create_key(store, "soon-gone", [target.role])
    app = build_app(target.service, creds.settings(key_refresh=0.05), tmp_path, request)
    async with running(app) as client:
        assert (await call(client, target, bearer(token))).status_code == target.ok
        await revoke_key(store, key.id)
        # The gate reloads the store in the background every key_refresh seconds.
        deadline = time.monotonic() + 10
        while True:
            r = await call(client, target, bearer(token))
            if r.status_code == 401 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        refusal(r, 401, target.unauthenticated, "invalid_api_key")


async def test_the_burst_then_429_with_retry_after(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    token = await creds.key("busy", target.role)
    other = await creds.key("quiet", target.role)
    app = build_app(target.service, creds.settings(rate_limit=0.5, rate_burst=3), tmp_path, request)
    async with running(app) as client:
        for _ in range(3):
            assert (await call(client, target, bearer(token))).status_code == target.ok
        r = await call(client, target, bearer(token))
        refusal(r, 429, "rate_limited", "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        # Buckets are per key.
        assert (await call(client, target, bearer(other))).status_code == target.ok
        assert (await client.get("/health")).status_code in (200, 503)


async def test_two_instances_share_one_bucket_through_redis(
    target: Target, creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest, redis_server: RedisServer
) -> None:
    token = await creds.key("shared", target.role)
    security = creds.settings(rate_limit=0.2, rate_burst=4, redis_url=redis_server.url)
    first = build_app(target.service, security, tmp_path / "a", request)
    second = build_app(target.service, security, tmp_path / "b", request)
    async with running(first) as a, running(second) as b:
        for client in (a, b, a, b):
            assert (await call(client, target, bearer(token))).status_code == target.ok
        for client in (a, b):
            r = await call(client, target, bearer(token))
            refusal(r, 429, "rate_limited", "rate_limited")
            assert int(r.headers["retry-after"]) >= 1
        assert gate_of(first).limiter.redis_errors == 0


# -- the route tables ---------------------------------------------------------------------------


def test_every_route_of_every_service_declares_its_roles(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for target in TARGETS:
        app = build_app(target.service, creds.settings(), tmp_path / target.service, request)
        gate = gate_of(app)
        for route in app.routes:
            path = getattr(route, "path", None)
            methods = getattr(route, "methods", None) or {"GET"}
            if path is None:
                continue
            sample = path.replace("{rest:path}", "/x")
            for name in ("path", "policy_id"):
                sample = sample.replace("{" + name + ":path}", "a/b")
            while "{" in sample:
                sample = sample[: sample.index("{")] + "x" + sample[sample.index("}") + 1 :]
            for method in methods:
                rule = gate.access.rule_for(method, sample)
                assert rule is not UNLISTED, f"{target.service}: {method} {path} has no rule"
                if isinstance(route, APIRoute) and route.path == "/health":
                    assert rule.public


# -- evolution: the reviewer is the authenticated principal ------------------------------------


MINOR: dict[str, Any] = {
    "agent_id": "agent-7",
    "type": "configuration",
    "changes": {"code_changes": ["config/limits.yaml"], "lines_changed": 4},
    "rollback_plan": {"procedure": "restore the previous file", "steps": ["notify"], "tested": True, "automated": True},
}


async def test_evolution_reviewer_identity_comes_from_the_credential(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    agent = await creds.key("agent-7", "agent")
    rita = await creds.key("rita", "reviewer")
    app = build_app("evolution", creds.settings(), tmp_path, request)
    async with running(app) as client:
        # The requester is the agent's principal, whatever the body's fallback headers say.
        r = await client.post("/evolution/request", json=MINOR, headers={**bearer(agent), "X-ACGS-Identity": "someone-else"})
        assert r.status_code == 201, r.text
        submitted = r.json()
        assert submitted["requested_by"] == "agent-7"
        assert submitted["status"] == "pending", submitted
        request_id = submitted["request_id"]
        # Nor can it name another requester (who might then not count as itself).
        r = await client.post("/evolution/request", json={**MINOR, "requested_by": "carol"}, headers=bearer(agent))
        refusal_body = r.json()
        assert r.status_code == 403 and refusal_body["code"] == "forbidden" and "agent-7" in refusal_body["message"]
        # The agent cannot approve (no reviewer role), not even by claiming one in headers.
        r = await client.post(
            f"/evolution/requests/{request_id}/approve",
            json={"reason": "lgtm"},
            headers={**bearer(agent), "X-ACGS-Identity": "rita", "X-ACGS-Role": "reviewer"},
        )
        refusal(r, 403, "forbidden", "role_not_allowed")
        # Rita approves; a header naming someone else changes nothing.
        r = await client.post(
            f"/evolution/requests/{request_id}/approve",
            json={"reason": "fine"},
            headers={**bearer(rita), "X-ACGS-Identity": "mallory"},
        )
        assert r.status_code == 200, r.text
        approved = r.json()
        assert approved["status"] == "approved"
        assert approved["approvals"][0]["reviewer"] == "rita", approved["approvals"]


async def test_evolution_review_form_uses_the_principal_and_basic_auth_in_a_browser(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    agent = await creds.key("agent-7", "agent")
    rita = await creds.key("rita", "reviewer")
    app = build_app("evolution", creds.settings(), tmp_path, request)
    async with running(app) as client:
        r = await client.get("/evolution/review")
        assert r.status_code == 401 and 'Basic realm="acgs"' in r.headers["www-authenticate"]
        r = await client.post("/evolution/request", json=MINOR, headers=bearer(agent))
        request_id = r.json()["request_id"]
        # What a browser sends after the Basic prompt: any user name, the API key as password.
        basic = httpx.BasicAuth("whoever", rita)
        assert (await client.get("/evolution/review", auth=basic)).status_code == 200
        r = await client.post(
            f"/evolution/review/{request_id}/approve",
            content="reviewer=mallory&reason=looks+fine",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=basic,
        )
        assert r.status_code == 303, r.text
        record = (await client.get(f"/evolution/requests/{request_id}", headers=bearer(rita))).json()
        assert record["status"] == "approved" and record["approvals"][0]["reviewer"] == "rita"


# -- metrics, Redis outage, PostgreSQL key store -----------------------------------------------


async def test_metrics_need_the_auditor_role_unless_public(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    auditor = await creds.key("prometheus", "auditor")
    agent = await creds.key("agent", "agent")
    for service in ("policy", "audit"):
        app = build_app(service, creds.settings(), tmp_path / service, request)
        async with running(app) as client:
            code = "unauthorized"
            refusal(await client.get("/metrics"), 401, code, "missing_credentials")
            refusal(await client.get("/metrics", headers=bearer(agent)), 403, "forbidden", "role_not_allowed")
            r = await client.get("/metrics", headers=bearer(auditor))
            assert r.status_code == 200
            assert f'acgs_auth_requests_total{{outcome="forbidden",service="{service}"}} 1.0' in r.text, r.text
        app = build_app(service, creds.settings(public_metrics=True), tmp_path / f"{service}-public", request)
        async with running(app) as client:
            assert (await client.get("/metrics")).status_code == 200


async def test_redis_down_the_limiter_falls_back_per_node_and_decisions_go_on(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest, redis_server: RedisServer
) -> None:
    token = await creds.key("agent", "agent")
    ops = await creds.key("ops", "auditor")
    target = TARGETS[0]
    app = build_app("policy", creds.settings(rate_limit=0.1, rate_burst=2, redis_url=redis_server.url), tmp_path, request)
    async with running(app) as client:
        assert (await call(client, target, bearer(token))).status_code == 200
        redis_server.stop()
        # The node's own bucket decides: full at first, so two more pass, then 429.
        assert (await call(client, target, bearer(token))).status_code == 200
        assert (await call(client, target, bearer(token))).status_code == 200
        refusal(await call(client, target, bearer(token)), 429, "rate_limited", "rate_limited")
        assert gate_of(app).limiter.redis_errors >= 1
        metrics = await client.get("/metrics", headers=bearer(ops))
        assert "acgs_rate_limit_redis_errors_total" in metrics.text


async def test_keys_in_postgresql_are_shared_by_nodes(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest, postgres_database: str
) -> None:
    security = creds.settings(key_store=postgres_database)
    store = open_key_store(postgres_database)
    key, token = await create_key(store, "pg-agent", ["agent"])
    target = TARGETS[0]
    first = build_app("policy", security, tmp_path / "a", request)
    second = build_app("policy", security, tmp_path / "b", request)
    async with running(first) as a, running(second) as b:
        for client in (a, b):
            assert (await call(client, target, bearer(token))).status_code == 200
        await revoke_key(store, key.id)
        for app, client in ((first, a), (second, b)):
            await gate_of(app).refresh()
            refusal(await call(client, target, bearer(token)), 401, "unauthorized", "invalid_api_key")


# -- the keys command ---------------------------------------------------------------------------


def test_keys_command_creates_lists_and_revokes(creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    runner = CliRunner()
    env = {"ACGS_DATA_DIR": str(creds.data_dir)}
    created = runner.invoke(keys_cli, ["create", "--name", "agent-9", "--role", "agent", "--role", "auditor"], env=env)
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("acgs_") and len(token) > 40
    key_id = created.output.split()[2]
    listed = runner.invoke(keys_cli, ["list"], env=env)
    assert listed.exit_code == 0 and key_id in listed.output and "agent-9" in listed.output and "agent,auditor" in listed.output
    assert token not in listed.output
    as_json = runner.invoke(keys_cli, ["list", "--json"], env=env)
    assert [json.loads(line)["id"] for line in as_json.output.splitlines()] == [key_id]
    refused = runner.invoke(keys_cli, ["create", "--name", "x", "--role", "superuser"], env=env)
    assert refused.exit_code != 0 and "superuser" in refused.output

    target = TARGETS[0]
    app = build_app("policy", creds.settings(), tmp_path, request)

    async def against_the_service() -> None:
        async with running(app) as client:
            assert (await call(client, target, bearer(token))).status_code == 200
            # The command runs its own event loop, so it goes to a thread here.
            revoked = await asyncio.to_thread(runner.invoke, keys_cli, ["revoke", key_id], env=env)
            assert revoked.exit_code == 0 and key_id in revoked.output
            await gate_of(app).refresh()
            refusal(await call(client, target, bearer(token)), 401, "unauthorized", "invalid_api_key")

    asyncio.run(against_the_service())
    assert runner.invoke(keys_cli, ["list"], env=env).output.strip() == "no keys"
    assert key_id in runner.invoke(keys_cli, ["list", "--all"], env=env).output
    unknown = runner.invoke(keys_cli, ["revoke", "feedfacecafe"], env=env)
    assert unknown.exit_code != 0 and "feedfacecafe" in unknown.output


# -- settings -------------------------------------------------------------------------------------


def test_settings_from_env_and_their_errors(tmp_path: Path) -> None:
    env = {
        "ACGS_AUTH": "true",
        "ACGS_DATA_DIR": str(tmp_path),
        "ACGS_JWT_ALGORITHMS": "hs256",
        "ACGS_JWT_HS256_KEY": "s3cret",
        "ACGS_RATE_LIMIT": "100",
        "ACGS_RATE_LIMIT_ROLES": "reviewer=5:10, admin=0",
        "ACGS_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    settings = SecuritySettings.from_env(env)
    assert settings.auth and settings.jwt_algorithms == ("HS256",)
    assert settings.resolved_key_store() == f"sqlite:///{tmp_path / 'keys.sqlite3'}"
    assert settings.limit_for(frozenset({"agent"})) == (100.0, 100.0)
    assert settings.limit_for(frozenset({"reviewer"})) == (5.0, 10.0)
    assert settings.limit_for(frozenset({"admin", "reviewer"}))[0] == 0  # unlimited wins
    assert SecuritySettings.from_env({}).enforcing is False
    shown = json.dumps(settings.replace(redis_url="redis://u:pw@h:6379/0").public())
    assert "s3cret" not in shown and "pw@" not in shown
    for bad, words in [
        ({"ACGS_AUTH": "maybe"}, "ACGS_AUTH"),
        ({"ACGS_JWT_ALGORITHMS": "ES256"}, "ES256"),
        ({"ACGS_JWT_ALGORITHMS": "RS256"}, "ACGS_JWT_PUBLIC_KEY_FILE"),
        ({"ACGS_JWT_ALGORITHMS": "HS256"}, "ACGS_JWT_HS256_KEY"),
        ({"ACGS_RATE_LIMIT_ROLES": "root=5"}, "ACGS_RATE_LIMIT_ROLES"),
        ({"ACGS_RATE_LIMIT": "-1"}, "ACGS_RATE_LIMIT"),
        ({"ACGS_TLS_CLIENT_CA_FILE": "/ca.pem"}, "ACGS_TLS_CERT_FILE"),
        ({"ACGS_AUTH_KEY_STORE": "mysql://x"}, "ACGS_AUTH_KEY_STORE"),
    ]:
        with pytest.raises(ValueError, match=words):
            SecuritySettings.from_env(bad)
    with pytest.raises(ValueError, match="ACGS_TLS_CERT_FILE"):
        uvicorn_tls_options(SecuritySettings(tls_cert_file=tmp_path / "missing.pem"))
    assert uvicorn_tls_options(SecuritySettings()) == {}
    assert set(ROLES) == {"agent", "reviewer", "auditor", "admin", "service"}


# -- TLS and mutual TLS -------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _issue(
    subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name | None, issuer_key: rsa.RSAPrivateKey, *, ca: bool = False, server: bool = False
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    def new_key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pem = serialization.Encoding.PEM
    ca_key = new_key()
    ca_cert = _issue("ACGS test CA", ca_key, None, ca_key, ca=True)
    other_ca_key = new_key()
    other_ca = _issue("Someone else's CA", other_ca_key, None, other_ca_key, ca=True)
    out = Pki(*(tmp_path / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key", "stranger.pem", "stranger.key")))
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    server_key, client_key, stranger_key = new_key(), new_key(), new_key()
    out.server_cert.write_bytes(_issue("127.0.0.1", server_key, ca_cert.subject, ca_key, server=True).public_bytes(pem))
    _write_key(out.server_key, server_key)
    out.client_cert.write_bytes(_issue("agent-7", client_key, ca_cert.subject, ca_key).public_bytes(pem))
    _write_key(out.client_key, client_key)
    out.stranger_cert.write_bytes(_issue("agent-x", stranger_key, other_ca.subject, other_ca_key).public_bytes(pem))
    _write_key(out.stranger_key, stranger_key)
    return out


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(
    target: Target, creds: Credentials, pki: Pki, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    security = creds.settings(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca)
    token = asyncio.run(creds.key("tls-agent", target.role))
    app = build_app(target.service, security, tmp_path, request)
    with ServerThread(app, **uvicorn_tls_options(security)) as server:
        url = f"https://127.0.0.1:{server.port}"
        with httpx.Client(verify=_client_context(pki, pki.client_cert, pki.client_key)) as client:
            r = client.request(target.method, url + target.path, json=target.body, headers=bearer(token))
            assert r.status_code == target.ok, r.text
            assert client.get(url + target.path).status_code == 401  # TLS is no substitute for credentials
        for ctx in (_client_context(pki), _client_context(pki, pki.stranger_cert, pki.stranger_key)):
            with httpx.Client(verify=ctx) as client, pytest.raises(httpx.TransportError):
                client.get(url + "/health")
        with httpx.Client(verify=False) as client, pytest.raises(httpx.TransportError):
            client.get(url.replace("https", "http") + "/health")


def test_plain_tls_serves_https(creds: Credentials, pki: Pki, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    security = SecuritySettings(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key)
    options = uvicorn_tls_options(security)
    assert "ssl_ca_certs" not in options and "ssl_cert_reqs" not in options
    app = build_app("policy", security, tmp_path, request)
    with ServerThread(app, **options) as server, httpx.Client(verify=_client_context(pki)) as client:
        r = client.post(f"https://127.0.0.1:{server.port}/v1/data/acgs/example/allow", json={"input": GOOD})
        assert r.status_code == 200 and r.json()["result"] is True


# -- services writing to an audit service that requires credentials ---------------------------


def test_http_audit_sinks_send_their_api_key(creds: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acgs.audit.sink import AuditDeliveryError, BlockingHttpAuditSink, HttpAuditSink

    writer = asyncio.run(creds.key("policy-node-1", "agent"))
    event = {"event_type": "constitutional_validation", "agent_id": "agent-42", "action": "data.read_public", "result": "allowed"}
    app = audit_app(AuditSettings(data_dir=tmp_path / "audit", checkpoint_interval=0), security=creds.settings())
    with ServerThread(app) as server:
        url = f"http://127.0.0.1:{server.port}"

        async def deliver() -> None:
            sink = HttpAuditSink(url, api_key=writer, timeout=60)  # a fresh store on a loaded machine can be slow
            try:
                receipt = await sink.record_receipt(event)
                assert receipt["ingested"] is True
            finally:
                await sink.aclose()
            anonymous = HttpAuditSink(url, api_key="", timeout=60)
            try:
                with pytest.raises(AuditDeliveryError, match="401"):
                    await anonymous.record(event)
            finally:
                await anonymous.aclose()

        asyncio.run(deliver())
        monkeypatch.setenv("ACGS_AUDIT_API_KEY", writer)
        blocking = BlockingHttpAuditSink(url)
        try:
            blocking.record(event)
        finally:
            blocking.close()


# -- limits without authentication, and per role ------------------------------------------------


async def test_without_auth_a_rate_limit_counts_per_client_address(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    target = TARGETS[0]
    app = build_app("policy", SecuritySettings(data_dir=tmp_path, rate_limit=0.2, rate_burst=2), tmp_path, request)
    async with running(app) as client:
        for _ in range(2):
            assert (await call(client, target)).status_code == 200
        body = refusal(await call(client, target), 429, "rate_limited", "rate_limited")
        assert "127.0.0.1" in body["message"]
    # No limit and no auth: no gate at all.
    assert not hasattr(build_app("policy", SecuritySettings(), tmp_path, request).state, "security_gate")


async def test_per_role_limits_override_the_default(creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    target = TARGETS[0]
    agent = await creds.key("bulk-agent", "agent")
    admin = await creds.key("operator", "admin")
    security = creds.settings(rate_limit=0.2, rate_burst=1, rate_limit_roles="agent=0.2:4,admin=0")
    app = build_app("policy", security, tmp_path, request)
    async with running(app) as client:
        for _ in range(4):
            assert (await call(client, target, bearer(agent))).status_code == 200
        refusal(await call(client, target, bearer(agent)), 429, "rate_limited", "rate_limited")
        for _ in range(10):  # unlimited
            assert (await call(client, target, bearer(admin))).status_code == 200


def test_acgs_keys_reads_the_key_store_from_the_configuration_file(tmp_path: Path) -> None:
    from acgs.cli import cli

    store = tmp_path / "elsewhere" / "keys.sqlite3"
    config = tmp_path / "acgs.toml"
    config.write_text(f'[security]\nkey_store = "sqlite:///{store}"\n')
    runner = CliRunner()
    created = runner.invoke(cli, ["--config", str(config), "keys", "create", "--name", "n", "--role", "reviewer", "--json"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["roles"] == ["reviewer"] and store.is_file()
    listed = runner.invoke(cli, ["--config", str(config), "keys", "list", "--json"], env={"ACGS_CONFIG": ""})
    assert json.loads(listed.output)["name"] == "n"


# -- acgs serve with authentication on ----------------------------------------------------------


def test_acgs_serve_with_auth_on_guards_every_service_and_still_audits(tmp_path: Path) -> None:
    """All four services in one process from a configuration file with ``[security] auth``:
    health stays open, every API needs a key, and decisions still reach the audit log because
    the services deliver with a key ``acgs serve`` makes for itself (no ACGS_AUDIT_API_KEY given)
    and revokes when it stops."""
    import os
    import subprocess
    import sys

    from tests.services.test_serve_all import SERVICES, _fresh_config, _log, _start, _wait_up

    config, ports = _fresh_config()
    with config.open("a") as f:
        f.write("\n[security]\nauth = true\nkey_refresh = 1.0\n")
    env = {k: v for k, v in os.environ.items() if not (k.startswith("ACGS_") and not k.endswith("_REQUIRED"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])

    def acgs(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "acgs", "--config", str(config), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    agent = json.loads(acgs("keys", "create", "--name", "agent-serve", "--role", "agent", "--json"))["token"]
    auditor = json.loads(acgs("keys", "create", "--name", "ops", "--role", "auditor", "--json"))["token"]
    # With auth on, what an agent is trusted with comes from the registry (unregistered: 0).
    acgs("agents", "add", "agent-serve", "--trust", "0.9")
    proc = _start(config, env)
    try:
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
        _wait_up(proc, list(urls.values()), _log(config))
        probes = {
            "policy": ("POST", "/v1/data/acgs/main/decision"),
            "evolution": ("GET", "/evolution/requests"),
            "audit": ("GET", "/audit/events"),
            "sandbox": ("GET", "/runtimes"),
        }
        for name, (method, path) in probes.items():
            r = httpx.request(method, urls[name] + path, json={"input": {}} if method == "POST" else None, timeout=10)
            assert r.status_code == 401 and r.json()["errors"][0]["code"] == "missing_credentials", (name, r.text)
        import acgs as acgs_module

        r = httpx.post(urls["policy"] + "/v1/data/acgs/main/decision", json={"input": acgs_module.SEED_REQUEST}, headers=bearer(agent), timeout=10)
        assert r.status_code == 200 and r.json()["result"]["allow"] is True, r.text
        decision_id = r.json()["decision_id"]
        deadline = time.monotonic() + 30
        while True:
            events = httpx.get(urls["audit"] + "/audit/events", params={"decision_id": decision_id}, headers=bearer(auditor), timeout=10)
            assert events.status_code == 200, events.text
            if events.json()["events"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert events.json()["events"][0]["event"]["event_type"] == "policy_decision"
    finally:
        stop(proc, grace=60)
    listed = [json.loads(line) for line in acgs("keys", "list", "--all", "--json").splitlines() if line.strip()]
    internal = [k for k in listed if k["name"].startswith("acgs-serve-")]
    assert len(internal) == 1 and internal[0]["roles"] == ["service"] and internal[0]["revoked_at"], internal


async def test_an_unreadable_key_store_answers_503_for_keys_and_jwts_still_work(
    creds: Credentials, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = TARGETS[0]
    nowhere = f"postgresql://acgs@127.0.0.1:{free_port()}/acgs"
    app = build_app("policy", creds.settings(key_store=nowhere), tmp_path, request)
    async with running(app) as client:
        r = await call(client, target, bearer("acgs_0123456789ab_" + "x" * 43))
        refusal(r, 503, "unavailable", "key_store_unavailable")
        assert r.headers["retry-after"] == "1"
        assert (await call(client, target, bearer(creds.jwt("RS256", ["agent"])))).status_code == 200
