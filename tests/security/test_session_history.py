"""Through the policy service a session's history is a fact, not a claim (docs/security.md,
"Session history"): the service reads the history the session rules judge from its own
record of the session's tool decisions and records every decision there before answering, so
a remote agent that sends ``session.history: []`` (or a ``trusted`` member of its own), asks
through another route (GET, a document, a batch, the flat body), shares a session id with
another principal, or names a new session id (or none) for the send, still cannot send data out
after reading a secret: the shipped rule reads the principal's calls across all its sessions.
The same with the record in process and in a real Redis."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs.guard import Guard
from acgs.registry import new_agent, open_registry
from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from acgs.trust.sessions import RedisSessionLedger, open_ledger
from tests.services.conftest import RedisServer, ServerThread

ENTRYPOINT = "acgs/tools/decision"
RULE = "session rule no_exfiltration_after_secrets"
HISTORY_MAX = acgs.Engine.load(acgs.default_bundle_path()).data["acgs"]["constitution"]["tools"]["history_max"]
SEND = {"tool": "http_get", "arguments": {"url": "https://api.github.com/repos"}}
SECRET = {"tool": "read_secret", "arguments": {"name": "db_password"}}
POST = {"tool": "http_post", "arguments": {"url": "https://api.github.com/gists", "body": "s3cr3t"}}


def approval_bundle(tmp_path: Path) -> Path:
    """The shipped constitution with read_secret held for approval (its catalogue is data)."""

    def hold(tools: dict[str, Any]) -> None:
        tools["catalogue"]["read_secret"]["outcome"] = "require_approval"

    return edited_bundle(tmp_path, hold)


def session_scoped_bundle(tmp_path: Path) -> Path:
    """The shipped constitution with its session rules scoped to one session."""

    def scope(tools: dict[str, Any]) -> None:
        for rule in tools["session_rules"]:
            rule["scope"] = "session"

    return edited_bundle(tmp_path, scope)


def edited_bundle(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The shipped constitution with its ``tools`` data changed by ``edit`` (no OPA needed)."""
    out = io.BytesIO()
    with tarfile.open(acgs.default_bundle_path(), "r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src.getmembers():
            extracted = src.extractfile(member)
            raw = extracted.read() if extracted else b""
            if member.name.lstrip("/") == "data.json":
                data = json.loads(raw)
                edit(data["acgs"]["constitution"]["tools"])
                raw = json.dumps(data).encode()
                member.size = len(raw)
            dst.addfile(member, io.BytesIO(raw))
    path = tmp_path / "constitution.tar.gz"
    path.write_bytes(out.getvalue())
    return path


class Service:
    """A policy service under uvicorn with authentication on, two registered agents trusted
    with secrets, and their API keys."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str | None, bundle: Path | None) -> None:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        registry_url = f"sqlite:///{tmp_path / 'agents.sqlite3'}"
        monkeypatch.setenv("ACGS_AGENT_REGISTRY", registry_url)
        security = SecuritySettings(auth=True, data_dir=data, key_refresh=60.0)

        #: Each agent's sessions are kept under its key (acgs.trust.owner_key).
        self.owners: dict[str, str] = {}

        async def setup() -> dict[str, str]:
            registry = open_registry(registry_url)
            store = open_key_store(security.resolved_key_store())
            tokens = {}
            for name in ("agent-a", "agent-b"):
                await registry.add(new_agent(name, trust_level=Decimal("0.95")))
                key, tokens[name] = await create_key(store, name, ("agent",))
                self.owners[name] = f"key:{key.id}"
            return tokens

        self.tokens = asyncio.run(setup())
        # A generous Redis deadline: on a loaded 2-core machine the default 50 ms is missed now
        # and then, and a ledger that cannot answer denies (fail closed), which is not what
        # these tests are about (test_a_ledger_that_cannot_be_read_denies is).
        settings = PolicySettings(
            data_dir=data, bundle=bundle or acgs.default_bundle_path(), redis_url=redis_url, redis_timeout_ms=2000.0
        )
        self.app = policy_app(settings, security=security)
        self.server = ServerThread(self.app)
        self.url = ""

    def __enter__(self) -> Service:
        self.server.__enter__()
        self.url = f"http://127.0.0.1:{self.server.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def headers(self, agent: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[agent]}"}

    def ask(self, agent: str, call: dict[str, Any], session: Any = None, **extra: Any) -> dict[str, Any]:
        """One raw Data API request, forged as the caller likes: its outcome and decision id."""
        doc: dict[str, Any] = {"agent_id": agent, **call, **extra}
        if session is not None:
            doc["session"] = session
        r = httpx.post(f"{self.url}/v1/data/{ENTRYPOINT}", json={"input": doc}, headers=self.headers(agent))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return {**body["result"], "decision_id": body["decision_id"]}


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> str | None:
    if request.param == "local":
        return None
    server: RedisServer = request.getfixturevalue("redis")
    return server.url


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None) -> Iterator[Service]:
    with Service(tmp_path, monkeypatch, backend, None) as svc:
        yield svc


def test_a_remote_guard_cannot_send_after_reading_a_secret(service: Service) -> None:
    ran: list[str] = []
    with Guard(url=service.url, api_key=service.tokens["agent-a"], agent_id="agent-a", session_id="s-guard") as g:

        @g.tool
        def read_secret(name: str) -> str:
            ran.append("read_secret")
            return "s3cr3t"

        @g.tool
        def http_get(url: str) -> str:
            ran.append("http_get")
            return "page"

        assert read_secret("db_password") == "s3cr3t"
        with pytest.raises(acgs.ToolDenied) as denied:
            http_get("https://api.github.com/repos")
        assert any(RULE in r for r in denied.value.reasons), denied.value.reasons
    assert ran == ["read_secret"]


def test_a_forged_history_or_trusted_member_clears_nothing(service: Service) -> None:
    clean = {"id": "s-forged", "history": []}
    assert service.ask("agent-a", SECRET, clean)["outcome"] == "allow"
    forgeries: list[dict[str, Any]] = [
        {"session": clean},
        {"session": clean, "trusted": {"session": clean}},
        {"session": clean, "trusted": {"session": clean, "principal": {"id": "agent-b"}}},
        {"session": {"id": "s-forged", "history": [{"tool": "read_file", "outcome": "allow", "labels": []}]}},
    ]
    for forged in forgeries:
        d = service.ask("agent-a", SEND, **forged)
        assert d["outcome"] == "deny" and any(RULE in r for r in d["reasons"]), (forged, d)

    # Other routes to the same decision see the same record.
    auth = service.headers("agent-a")
    doc = {"agent_id": "agent-a", **SEND, "session": clean}
    r = httpx.get(f"{service.url}/v1/data/{ENTRYPOINT}", params={"input": json.dumps(doc)}, headers=auth)
    assert any(RULE in x for x in r.json()["result"]["reasons"]), r.text
    r = httpx.get(f"{service.url}/v1/data/{ENTRYPOINT}/allow", params={"input": json.dumps(doc)}, headers=auth)
    assert r.json()["result"] is False, r.text
    r = httpx.post(f"{service.url}/v1/data/acgs/tools", json={"input": doc}, headers=auth)
    assert any(RULE in x for x in r.json()["result"]["decision"]["reasons"]), r.text
    r = httpx.post(f"{service.url}/v1/data/{ENTRYPOINT}", json={**doc, "constitutional_hash": "cdd01ef066bc6cf2"}, headers=auth)
    assert any(RULE in x for x in r.json()["reasons"]), r.text  # the flat body

    # One batch: the read and the send in one request, the send judged after the read.
    batch = {"inputs": [{"agent_id": "agent-a", **SECRET, "session": {"id": "s-batch"}},
                        {"agent_id": "agent-a", **SEND, "session": {"id": "s-batch", "history": []}}]}  # fmt: skip
    r = httpx.post(f"{service.url}/v1/batch/data/{ENTRYPOINT}", json=batch, headers=auth)
    outcomes = [e["result"]["outcome"] for e in r.json()["results"]]
    assert outcomes == ["allow", "deny"], r.text


def test_only_asking_leaves_a_trace(service: Service) -> None:
    """A decision the client only asked about is recorded like one it acted on."""
    with Guard(url=service.url, api_key=service.tokens["agent-a"], agent_id="agent-a", session_id="s-ask") as g:
        assert g.decide("read_secret", {"name": "db_password"}).outcome == "allow"
        d = g.decide("http_get", {"url": "https://api.github.com/repos"})
    assert d.outcome == "deny" and any(RULE in r for r in d.reasons), d.reasons


def test_principals_do_not_share_a_session(service: Service) -> None:
    assert service.ask("agent-a", SECRET, {"id": "shared"})["outcome"] == "allow"
    assert service.ask("agent-b", SEND, {"id": "shared"})["outcome"] == "allow"
    assert service.ask("agent-a", SEND, {"id": "shared"})["outcome"] == "deny"
    # agent-b cannot name agent-a's session any other way: the owner is its credential.
    assert service.ask("agent-b", SEND, {"id": "shared"}, agent_id="agent-a")["outcome"] == "allow"


def test_a_new_session_id_sheds_nothing(service: Service) -> None:
    """The agent is the adversary and carries what it read across its own sessions: the send
    is judged on its calls in every session."""
    assert service.ask("agent-a", SECRET, {"id": "a"})["outcome"] == "allow"
    for call in (SEND, POST):
        for session in ({"id": "b"}, {"id": "b", "history": []}, None):
            d = service.ask("agent-a", call, session)
            assert d["outcome"] == "deny" and any(RULE in r and "read_secret" in r for r in d["reasons"]), (call, session, d)


def test_calls_that_name_no_session_are_bound_too(service: Service) -> None:
    assert service.ask("agent-a", SECRET)["outcome"] == "allow"
    d = service.ask("agent-a", POST)
    assert d["outcome"] == "deny" and any(RULE in r for r in d["reasons"]), d
    assert service.ask("agent-a", SEND, {"id": "fresh"})["outcome"] == "deny"
    # The read is in agent-a's record, in no session.
    session, principal = asyncio.run(recorded_both(service, "agent-a", None))
    assert session == b"[]"
    assert [e["tool"] for e in json.loads(principal)] == ["read_secret", "http_post", "http_get"]


def test_a_remote_guard_with_a_new_session_per_call_is_still_denied(service: Service) -> None:
    ran: list[str] = []
    token = service.tokens["agent-a"]
    with Guard(url=service.url, api_key=token, agent_id="agent-a", session_id="s-1") as first:

        @first.tool
        def read_secret(name: str) -> str:
            ran.append("read_secret")
            return "s3cr3t"

        assert read_secret("db_password") == "s3cr3t"
    with Guard(url=service.url, api_key=token, agent_id="agent-a", session_id="s-2") as second:

        @second.tool
        def http_get(url: str) -> str:
            ran.append("http_get")
            return "page"

        with pytest.raises(acgs.ToolDenied) as denied:
            http_get("https://api.github.com/repos")
        assert any(RULE in r for r in denied.value.reasons), denied.value.reasons
    assert ran == ["read_secret"]


def test_another_principal_is_not_bound_by_the_first(service: Service) -> None:
    """The binding is per principal: agent-b, in the very session id agent-a read a secret in,
    and in none, is judged on its own calls alone."""
    assert service.ask("agent-a", SECRET, {"id": "shared"})["outcome"] == "allow"
    assert service.ask("agent-a", SECRET)["outcome"] == "allow"
    assert service.ask("agent-b", SEND, {"id": "shared"})["outcome"] == "allow"
    assert service.ask("agent-b", SEND)["outcome"] == "allow"
    assert service.ask("agent-b", POST, {"id": "other"})["outcome"] == "require_approval"


def test_a_rule_scoped_to_the_session_reads_only_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None
) -> None:
    with Service(tmp_path, monkeypatch, backend, session_scoped_bundle(tmp_path)) as service:
        assert service.ask("agent-a", SECRET, {"id": "a"})["outcome"] == "allow"
        assert service.ask("agent-a", SEND, {"id": "b"})["outcome"] == "allow"
        assert service.ask("agent-a", SEND)["outcome"] == "allow"
        d = service.ask("agent-a", SEND, {"id": "a", "history": []})
        assert d["outcome"] == "deny" and any(RULE in r for r in d["reasons"]), d


def test_the_history_holds_history_max_calls(service: Service) -> None:
    """The record keeps the constitution's history_max calls: a read that has fallen off the
    end no longer holds a send (the constitution's bound, now enforced by the service)."""
    session = {"id": "s-long"}
    assert service.ask("agent-a", SECRET, session)["outcome"] == "allow"
    read = {"tool": "read_file", "arguments": {"path": "/workspace/notes/todo.md"}}
    with httpx.Client(headers=service.headers("agent-a")) as client:
        for _ in range(HISTORY_MAX - 1):
            body = {"input": {"agent_id": "agent-a", **read, "session": session}}
            assert client.post(f"{service.url}/v1/data/{ENTRYPOINT}", json=body).json()["result"]["outcome"] == "allow"
    # The read is the oldest of the last history_max calls: the send is denied, and recorded.
    assert service.ask("agent-a", SEND, session)["outcome"] == "deny"
    history = json.loads(asyncio.run(recorded(service, "agent-a", "s-long")))
    assert len(history) == HISTORY_MAX
    assert history[0]["tool"] == "read_file" and history[-1]["outcome"] == "deny"
    assert service.ask("agent-a", SEND, session)["outcome"] == "allow"


async def recorded_both(service: Service, agent: str, session_id: str | None) -> tuple[bytes, bytes]:
    """The service's record of a session and of the agent's calls across its sessions, read
    as :func:`recorded` reads."""
    ledger = service.app.state.session_ledger
    if not isinstance(ledger, RedisSessionLedger):
        both: tuple[bytes, bytes] = ledger.histories_now(service.owners[agent], session_id)
        return both
    other = open_ledger(HISTORY_MAX, redis_url=service.app.state.policy.settings.redis_url, timeout_ms=1000)
    try:
        return await other.histories_json(service.owners[agent], session_id)
    finally:
        await other.close()


async def recorded(service: Service, agent: str, session_id: str) -> bytes:
    """The service's record of a session, read from the test's thread: in process straight
    from the service's ledger; in Redis through a ledger of the test's own (the service's
    client lives on the service's event loop)."""
    ledger = service.app.state.session_ledger
    if not isinstance(ledger, RedisSessionLedger):
        history: bytes = ledger.history_now(service.owners[agent], session_id)
        return history
    other = open_ledger(HISTORY_MAX, redis_url=service.app.state.policy.settings.redis_url, timeout_ms=1000)
    try:
        return await other.history_json(service.owners[agent], session_id)
    finally:
        await other.close()


def test_a_call_held_for_approval_blocks_sends_until_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None
) -> None:
    with Service(tmp_path, monkeypatch, backend, approval_bundle(tmp_path)) as service:
        session = {"id": "s-held"}
        held = service.ask("agent-a", SECRET, session)
        assert held["outcome"] == "require_approval"
        # While reviewers decide, the read may yet run: no send.
        assert service.ask("agent-a", SEND, session)["outcome"] == "deny"

        async def settle(outcome: str, **kw: Any) -> bool:
            # As the evolution service does when reviewers decide: through a ledger of its own
            # on the same Redis, or the service's own in process.
            if backend is None:
                ledger = service.app.state.session_ledger
                return bool(ledger.settle_now(held["decision_id"], outcome, **kw))
            other = open_ledger(HISTORY_MAX, redis_url=backend, timeout_ms=1000)
            try:
                return await other.settle(held["decision_id"], outcome, **kw)
            finally:
                await other.close()

        assert not asyncio.run(settle("rejected", tool="http_get"))  # not the call it names
        assert asyncio.run(settle("approved", tool="read_secret"))
        assert service.ask("agent-a", SEND, session)["outcome"] == "deny"  # approved: it ran

        # agent-a's approved read holds its sends in every session; agent-b starts clean.
        assert service.ask("agent-a", SEND, {"id": "s-other"})["outcome"] == "deny"
        held = service.ask("agent-b", SECRET, {"id": "s-held-2"})
        assert service.ask("agent-b", SEND, {"id": "s-held-3"})["outcome"] == "deny"  # pending, another session
        assert asyncio.run(settle("rejected", tool="read_secret"))
        # Rejected: it never ran, in its session or in any other of agent-b's.
        assert service.ask("agent-b", SEND, {"id": "s-held-2"})["outcome"] == "allow"
        assert service.ask("agent-b", SEND)["outcome"] == "allow"




def resumed(session_id: str, decision_id: Any) -> dict[str, Any]:
    return {"id": session_id, "resumes": decision_id}


def test_a_resumed_call_is_one_entry_and_never_its_own_predecessor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None
) -> None:
    """The honest case the forged ones below are measured against: a read held for review,
    decided again naming the decision that asked, is judged without its own entry and leaves
    no second one; once approved, it holds every send as before."""
    with Service(tmp_path, monkeypatch, backend, approval_bundle(tmp_path)) as service:
        first = service.ask("agent-a", SECRET, {"id": "s-r"})
        assert first["outcome"] == "require_approval"
        again = service.ask("agent-a", SECRET, resumed("s-r", first["decision_id"]))
        assert again["outcome"] == "require_approval" and again["decision_id"] != first["decision_id"]
        assert json.loads(asyncio.run(recorded(service, "agent-a", "s-r"))) == [
            {"tool": "read_secret", "outcome": "require_approval", "labels": ["reads_secrets"]}
        ]
        assert service.ask("agent-a", SEND, {"id": "s-r"})["outcome"] == "deny"


def test_a_forged_resumes_sheds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str | None) -> None:
    """``session.resumes`` is the caller's word: the service leaves an entry out only when its
    own record holds that decision as this caller's call of the same tool in the same session.
    A send naming the read it follows (another tool), another caller's pending call of the same
    tool, its own from another session, an unknown id or a malformed one is judged on the whole
    history, denied, and recorded."""
    with Service(tmp_path, monkeypatch, backend, approval_bundle(tmp_path)) as service:
        read = service.ask("agent-a", SECRET, {"id": "s-f"})["decision_id"]
        post_elsewhere = service.ask("agent-a", SEND, {"id": "s-g"})
        assert post_elsewhere["outcome"] == "deny"  # the pending read counts in every session
        others = service.ask("agent-b", {"tool": "http_get", "arguments": {"url": "https://api.github.com/x"}}, {"id": "s-f"})
        assert others["outcome"] == "allow"
        forgeries = (read, others["decision_id"], post_elsewhere["decision_id"], "no-such-decision", "", "x" * 129)
        forgeries += (7, None, ["a"])
        for forged in forgeries:
            denied = service.ask("agent-a", SEND, resumed("s-f", forged))
            assert denied["outcome"] == "deny", (forged, denied)
            assert any(RULE in r for r in denied["reasons"]), (forged, denied)
        entries = json.loads(asyncio.run(recorded(service, "agent-a", "s-f")))
        assert [e["tool"] for e in entries] == ["read_secret"] + ["http_get"] * 9
        assert [e["outcome"] for e in entries] == ["require_approval"] + ["deny"] * 9
        # A read of agent-a's named from agent-b's call: nothing of agent-a's is left out.
        held_b = service.ask("agent-b", SECRET, resumed("s-f", read))
        assert held_b["outcome"] == "require_approval"
        assert len(json.loads(asyncio.run(recorded(service, "agent-b", "s-f")))) == 2


def test_a_ledger_that_cannot_be_read_denies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with Service(tmp_path, monkeypatch, redis.url, None) as service:
            assert service.ask("agent-a", SECRET, {"id": "s"})["outcome"] == "allow"
            redis.stop()
            denied = service.ask("agent-a", {"tool": "read_file", "arguments": {"path": "/workspace/a"}}, {"id": "s"})
            assert denied["allow"] is False
            assert any("session ledger" in r for r in denied["reasons"]), denied
    finally:
        redis.stop()


def test_acgs_serve_shares_one_ledger(tmp_path: Path) -> None:
    """In one process (``acgs serve``) the evolution service settles action requests in the
    policy service's own record of the sessions."""
    from acgs.config import load_config
    from acgs.server import build_apps

    path = tmp_path / "acgs.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n')
    apps = build_apps(load_config(path, environ={}), ("evolution", "policy"))
    assert list(apps) == ["evolution", "policy"]
    ledger = apps["policy"].state.session_ledger
    assert ledger is not None and apps["evolution"].state.session_ledger is ledger
