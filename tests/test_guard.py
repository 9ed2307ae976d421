"""``acgs.Guard`` on the real constitution bundle (``acgs/tools/decision``, compiled by OPA):
wrapped sync and async tools, allow, deny, approval and approvers, argument constraints, the
session rule, redaction, output checks, faults that deny, arguments with no JSON form, audit
events in a real ``AuditLog`` that verifies, and the same guard against the real policy
service (ASGI transport and uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from acgs import _acgs as core
from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.guard import ENTRYPOINT, Guard, ToolDecision
from acgs.guard.decision import arguments_json, read_decision
from acgs.security import SecuritySettings
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from tests.services.conftest import ServerThread

BUNDLES = Path(acgs.__file__).parent / "bundles"
TRUSTED = {"agent": {"trust_level": 0.95}}


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    engine = acgs.Engine.load(acgs.default_bundle_path())
    assert ENTRYPOINT in engine.entrypoints
    return engine


@pytest.fixture
def guard(engine: acgs.Engine, audit_log: AuditLog) -> Iterator[Guard]:
    g = Guard(engine, agent_id="agent-7", session_id="s-1", audit=audit_log, trusted=TRUSTED)
    yield g
    g.close()


def events(log: AuditLog) -> list[dict[str, Any]]:
    stored = asyncio.run(log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=1000))
    return [s.event() for s in stored]


def tools(g: Guard) -> tuple[Any, ...]:
    ran: list[str] = []

    @g.tool
    def read_file(path: str, encoding: str = "utf-8") -> str:
        """Reads a file of the workspace."""
        ran.append("read_file")
        return f"contents of {path}"

    @g.tool
    def read_secret(name: str) -> str:
        ran.append("read_secret")
        return "s3cr3t"

    @g.tool
    async def http_get(url: str) -> dict[str, Any]:
        """Fetches a URL."""
        ran.append("http_get")
        return {"status": 200, "url": url}

    @g.tool(name="db.drop_table")
    def drop_table(table: str) -> None:
        ran.append("drop_table")

    @g.tool
    def send_email(to: str, subject: str, body: str = "") -> str:
        ran.append("send_email")
        return "sent"

    @g.tool(name="payments.transfer")
    async def transfer(amount: Any, currency: str, to_account: str) -> str:
        ran.append("transfer")
        return "ok"

    return ran, read_file, read_secret, http_get, drop_table, send_email, transfer


# -- wrapping -----------------------------------------------------------------------------------


def test_wrappers_keep_name_signature_docstring_and_kind(guard: Guard) -> None:
    _, read_file, _, http_get, drop_table, *_ = tools(guard)
    assert read_file.__name__ == "read_file" and read_file.__doc__ == "Reads a file of the workspace."
    assert str(inspect.signature(read_file)) == "(path: 'str', encoding: 'str' = 'utf-8') -> 'str'"
    assert inspect.iscoroutinefunction(http_get) and not inspect.iscoroutinefunction(read_file)
    assert http_get.__doc__ == "Fetches a URL." and drop_table.__name__ == "drop_table"
    with pytest.raises(TypeError):
        read_file()  # as the bare function would


# -- allow, deny, approval ----------------------------------------------------------------------


def test_allowed_calls_run_sync_and_async(guard: Guard) -> None:
    ran, read_file, _, http_get, *_ = tools(guard)
    assert read_file("/workspace/notes.txt") == "contents of /workspace/notes.txt"
    assert asyncio.run(http_get("https://en.wikipedia.org/wiki/Rego")) == {
        "status": 200, "url": "https://en.wikipedia.org/wiki/Rego"
    }  # fmt: skip
    assert ran == ["read_file", "http_get"]
    assert guard.history.snapshot() == [
        {"tool": "read_file", "outcome": "allow", "labels": ["reads_files"]},
        {"tool": "http_get", "outcome": "allow", "labels": ["network", "sends_data_out"]},
    ]


def test_constraint_denials_carry_the_decision(guard: Guard) -> None:
    ran, read_file, _, http_get, drop_table, *_ = tools(guard)
    with pytest.raises(acgs.ToolDenied) as denied:
        read_file("/etc/passwd")
    d = denied.value
    assert d.outcome == "deny" and d.tool == "read_file" and d.decision_id
    assert any("path" in r for r in d.reasons), d.reasons
    assert isinstance(d.decision, ToolDecision) and d.decision.outcome == "deny"
    with pytest.raises(acgs.ToolDenied):
        read_file("/workspace/../etc/passwd")
    with pytest.raises(acgs.ToolDenied):
        read_file("/workspace/.env")
    with pytest.raises(acgs.ToolDenied) as host:
        asyncio.run(http_get("https://evil.example.net/x"))
    assert any("url" in r for r in host.value.reasons), host.value.reasons
    with pytest.raises(acgs.ToolDenied):
        drop_table("users")
    assert ran == []


def test_numbers_are_compared_exactly(guard: Guard) -> None:
    ran, *_, transfer = tools(guard)
    ok = {"currency": "EUR", "to_account": "DE89370400440532013000"}
    assert asyncio.run(transfer(amount=50, **ok)) == "ok"
    for amount in (10001, Decimal("10000.000000000000000001"), 2**80, -1, 0):
        with pytest.raises(acgs.ToolDenied):
            asyncio.run(transfer(amount=amount, **ok))
    # Above the approval threshold: approval (not a deny, not an allow).
    with pytest.raises(acgs.ApprovalRequired):
        asyncio.run(transfer(amount=Decimal("100.000000000000000001"), **ok))
    assert ran == ["transfer"]
    assert arguments_json({"n": 1, "big": 2**80, "d": Decimal("0.10")}, "t") == b'{"n":1,"big":1208925819614629174706176,"d":0.10}'


def test_approval_required_without_an_approver(guard: Guard) -> None:
    ran, *_, send_email, _ = tools(guard)
    with pytest.raises(acgs.ApprovalRequired) as pending:
        send_email("bob@example.com", "hello")
    e = pending.value
    assert e.approval is not None and e.approval["reviewers"] == 1 and e.approval["roles"] == ["reviewer"]
    assert e.decision.outcome == "require_approval" and e.tool == "send_email" and e.decision_id
    assert ran == []
    assert guard.history.snapshot()[-1]["outcome"] == "require_approval"


def test_approvers_sync_and_async(engine: acgs.Engine, audit_log: AuditLog) -> None:
    seen: list[ToolDecision] = []

    def approve(decision: ToolDecision) -> bool:
        seen.append(decision)
        return decision.tool == "send_email"

    with Guard(engine, agent_id="agent-7", approver=approve, audit=audit_log, trusted=TRUSTED) as g:
        ran, read_file, *_, send_email, transfer = tools(g)
        assert send_email("bob@example.com", "hi") == "sent"
        ok = {"currency": "EUR", "to_account": "DE89370400440532013000"}
        with pytest.raises(acgs.ToolDenied) as rejected:
            asyncio.run(transfer(amount=500, **ok))
        assert rejected.value.outcome == "rejected" and rejected.value.code == "tool_rejected"
        assert [d.tool for d in seen] == ["send_email", "payments.transfer"]
        assert [e["outcome"] for e in g.history.snapshot()] == ["approved", "rejected"]
        read_file("/workspace/a")  # an allowed call never asks the approver
        assert len(seen) == 2
        assert g.flush()
    assert ran == ["send_email", "read_file"]
    results = [e["result"] for e in events(audit_log)]
    assert results == ["approved", "rejected", "allowed"]

    async def slow_yes(decision: ToolDecision) -> bool:
        await asyncio.sleep(0)
        return True

    with Guard(engine, agent_id="agent-7", approver=slow_yes, trusted=TRUSTED) as g:
        ran, *_, send_email, transfer = tools(g)
        assert asyncio.run(transfer(amount=500, **ok)) == "ok"
        with pytest.raises(TypeError):
            send_email("bob@example.com", "hi")  # a sync tool cannot wait on an async approver
        assert ran == ["transfer"]

    class Unreachable(Exception):
        pass

    def broken(decision: ToolDecision) -> bool:
        raise Unreachable("reviewer service down")

    with Guard(engine, agent_id="agent-7", approver=broken) as g:
        ran, *_, send_email, _ = tools(g)
        with pytest.raises(Unreachable):
            send_email("bob@example.com", "hi")
        assert ran == [] and g.history.snapshot()[-1]["outcome"] == "rejected"


# -- session ------------------------------------------------------------------------------------


def test_session_rule_read_secret_then_outbound_call_is_denied(guard: Guard, engine: acgs.Engine) -> None:
    ran, read_file, read_secret, http_get, *_ = tools(guard)
    url = "https://api.github.com/repos"
    assert asyncio.run(http_get(url))["status"] == 200  # before any secret: allowed
    assert read_secret("db_password") == "s3cr3t"
    with pytest.raises(acgs.ToolDenied) as denied:
        asyncio.run(http_get(url))
    assert any("no_exfiltration_after_secrets" in r for r in denied.value.reasons), denied.value.reasons
    assert any("read_secret" in r for r in denied.value.reasons), denied.value.reasons
    read_file("/workspace/a")  # other calls go on
    # Another session has its own history.
    with Guard(engine, agent_id="agent-7", session_id="s-2", trusted=TRUSTED) as other:
        _, _, _, other_get, *_ = tools(other)
        assert asyncio.run(other_get(url))["status"] == 200
    assert ran == ["http_get", "read_secret", "read_file"]


def test_a_denied_secret_read_does_not_taint_the_session(engine: acgs.Engine) -> None:
    with Guard(engine, agent_id="agent-7") as g:  # no trusted facts: trust 0
        _, _, read_secret, http_get, *_ = tools(g)
        with pytest.raises(acgs.ToolDenied) as low:
            read_secret("db_password")
        assert any("trust" in r for r in low.value.reasons), low.value.reasons
        assert asyncio.run(http_get("https://pypi.org/simple"))["status"] == 200


def test_history_is_bounded_and_thread_safe(engine: acgs.Engine) -> None:
    g = Guard(engine, agent_id="agent-7", trusted=TRUSTED, history_max=5)
    assert Guard(engine, agent_id="a").history.limit == 100  # from the constitution's data
    _, read_file, *_ = tools(g)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(25):
                read_file(f"/workspace/{i}")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(g.history) == 5

    async def many() -> list[Any]:
        _, _, _, http_get, *_ = tools(g)
        return await asyncio.gather(*(http_get(f"https://pypi.org/p/{i}") for i in range(20)))

    assert len(asyncio.run(many())) == 20 and len(g.history) == 5
    g.close()


# -- audit --------------------------------------------------------------------------------------


def test_each_call_is_one_audit_event_and_the_log_verifies(guard: Guard, audit_log: AuditLog) -> None:
    _, read_file, read_secret, http_get, drop_table, send_email, _ = tools(guard)
    read_file("/workspace/a.txt")
    with pytest.raises(acgs.ApprovalRequired):
        send_email("bob@example.com", "secret plans", "body")
    read_secret("api_token")
    with pytest.raises(acgs.ToolDenied) as denied:
        drop_table("users")
    assert guard.flush()
    got = events(audit_log)
    assert [e["action"] for e in got] == ["tool.read_file", "tool.send_email", "tool.read_secret", "tool.db.drop_table"]
    assert [e["result"] for e in got] == ["allowed", "approval_required", "allowed", "denied"]
    assert len({e["decision_id"] for e in got}) == 4 and got[3]["decision_id"] == denied.value.decision_id
    first, email, secret, drop = (e["metadata"] for e in got)
    assert first["arguments"] == {"path": "/workspace/a.txt", "encoding": "utf-8"}
    assert first["arguments_sha256"] == core.event_hashes(bytes(32), core.canonical_json(first["arguments"]))[0].hex()
    assert first["result_sha256"] and first["duration_ms"] >= 0 and first["session_id"] == "s-1"
    assert first["idempotency_key"] == f"tool:{got[0]['decision_id']}" and first["outcome"] == "allow"
    # The catalogue redacts secrets and e-mail: digest only.
    assert "arguments" not in secret and secret["arguments_sha256"]
    assert "arguments" not in email and email["outcome"] == "require_approval"
    assert drop["reasons"] and "result_sha256" not in drop
    assert all(e["agent_id"] == "agent-7" and e["event_type"] == "tool_call" for e in got)
    report = asyncio.run(audit_log.verify())
    assert report.ok and report.checked == 4


def test_output_checks(guard: Guard, audit_log: AuditLog) -> None:
    @guard.tool(name="read_file", check_output=lambda text: text.replace("hunter2", "[redacted]"))
    def read_config(path: str) -> str:
        return "password=hunter2"

    @guard.tool(name="read_file", max_output_bytes=16)
    def read_big(path: str) -> str:
        return "x" * 100

    def refuse(result: str) -> str:
        raise ValueError("binary content")

    @guard.tool(name="read_file", check_output=refuse)
    def read_binary(path: str) -> str:
        return "\x00"

    @guard.tool(name="read_file")
    def read_broken(path: str) -> str:
        raise OSError("disk on fire")

    assert read_config("/workspace/cfg") == "password=[redacted]"
    with pytest.raises(acgs.ToolOutputError):
        read_big("/workspace/big")
    with pytest.raises(ValueError, match="binary content"):
        read_binary("/workspace/bin")
    with pytest.raises(OSError, match="disk on fire"):
        read_broken("/workspace/x")
    assert guard.flush()
    got = events(audit_log)
    assert [e["result"] for e in got] == ["allowed", "failed", "failed", "failed"]
    assert got[0]["metadata"]["result_sha256"] == core.event_hashes(bytes(32), core.canonical_json("password=[redacted]"))[0].hex()
    assert "ToolOutputError" in got[1]["metadata"]["error"] and "disk on fire" in got[3]["metadata"]["error"]


# -- faults and bad arguments -------------------------------------------------------------------


def test_a_fault_in_deciding_is_a_deny(audit_log: AuditLog) -> None:
    # A real engine on a bundle without the tools entrypoint: the decision fails, the tool never runs.
    other = acgs.Engine.load(BUNDLES / "example.tar.gz")
    with Guard(other, agent_id="agent-7", audit=audit_log) as g:
        ran, read_file, *_ = tools(g)
        with pytest.raises(acgs.ToolDenied) as denied:
            read_file("/workspace/a")
        assert "unknown_entrypoint" in denied.value.reasons[0] and denied.value.decision.fault
        assert g.flush()
    # Nothing listens there: unreachable is a deny too.
    with Guard(url="http://127.0.0.1:9", agent_id="agent-7", timeout=2) as g:
        ran2, read_file, _, http_get, *_ = tools(g)
        with pytest.raises(acgs.ToolDenied, match="unreachable"):
            read_file("/workspace/a")
        with pytest.raises(acgs.ToolDenied, match="unreachable"):
            asyncio.run(http_get("https://pypi.org/"))
    assert ran == [] and ran2 == []
    (event,) = events(audit_log)
    assert event["result"] == "denied" and event["metadata"]["fault"] is True and "arguments" not in event["metadata"]


@pytest.mark.parametrize(
    ("result", "why"),
    [
        (None, "no tool decision"),
        ([], "no tool decision"),
        ({"outcome": "yes", "allow": True}, "no valid outcome"),
        ({"outcome": "allow", "allow": False}, "disagrees"),
        ({"outcome": "deny", "allow": True}, "disagrees"),
        ({"outcome": "allow", "allow": True, "reasons": "ok"}, "lists of strings"),
        ({"outcome": "allow", "allow": True, "labels": [1]}, "lists of strings"),
        ({"outcome": "allow", "allow": True, "conditions": {"sandbox": "yes"}}, "conditions"),
        ({"outcome": "require_approval", "allow": False, "approval": None}, "approval"),
    ],
)
def test_malformed_decisions_deny(result: Any, why: str) -> None:
    d = read_decision(result, "id-1", "read_file")
    assert d.outcome == "deny" and d.fault is not None and why in d.fault and d.redact_arguments


def test_arguments_with_no_json_form_fail_closed(guard: Guard, audit_log: AuditLog) -> None:
    ran: list[str] = []

    @guard.tool(name="read_file")
    def read_any(path: Any, **extra: Any) -> None:
        ran.append("read")

    cycle: list[Any] = []
    cycle.append(cycle)
    for bad in (object(), float("nan"), float("inf"), {1: "x"}, cycle, {"a": {b"bytes"}}, Decimal("NaN")):
        with pytest.raises(acgs.ToolInputError) as refused:
            read_any(bad)
        assert refused.value.tool == "read_file" and refused.value.code == "tool_input_error"
        assert isinstance(refused.value, ValueError)
    with pytest.raises(acgs.ToolInputError, match="extra"):
        read_any("/workspace/a", extra=lambda: 0)
    assert ran == []
    assert guard.flush()
    got = events(audit_log)
    assert len(got) == 8 and all(e["result"] == "denied" for e in got)


# -- remote -------------------------------------------------------------------------------------


def test_remote_guard_against_the_policy_service(audit_log: AuditLog, tmp_path: Path) -> None:
    def app_() -> Any:
        return policy_app(PolicySettings(data_dir=tmp_path, bundle=acgs.default_bundle_path()), security=SecuritySettings())

    app = app_()
    denied_ids: list[str | None] = []

    async def over_asgi() -> None:
        async with app.router.lifespan_context(app):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8004")
            g = Guard(url="http://127.0.0.1:8004", agent_id="agent-7", async_http_client=client, audit=audit_log)
            ran, _, _, http_get, drop_table, *_ = tools(g)

            @g.tool(name="db.drop_table")
            async def adrop(table: str) -> None:
                ran.append("adrop")

            assert (await http_get("https://pypi.org/simple"))["status"] == 200
            with pytest.raises(acgs.ToolDenied) as denied:
                await adrop("users")
            assert denied.value.decision_id and denied.value.reasons
            denied_ids.append(denied.value.decision_id)
            await g.aclose()
            await client.aclose()
            assert ran == ["http_get"]

    asyncio.run(over_asgi())
    with ServerThread(app_()) as server, Guard(url=f"http://127.0.0.1:{server.port}", agent_id="agent-7", audit=audit_log) as g:
        ran, read_file, *_ = tools(g)
        assert read_file("/workspace/a") == "contents of /workspace/a"
        with pytest.raises(acgs.ToolDenied):
            read_file("/etc/shadow")
        assert ran == ["read_file"] and g.flush()
    got = events(audit_log)
    assert [e["result"] for e in got] == ["allowed", "denied", "allowed", "denied"]
    # The service's decision id names the event.
    assert got[1]["decision_id"] == denied_ids[0]


def test_arguments_bind_as_the_signature_says(engine: acgs.Engine, audit_log: AuditLog) -> None:
    """Arguments by parameter name, defaults applied, ``*args`` as a list, ``**kwargs`` merged;
    a call the signature refuses raises its TypeError and is never decided."""
    with Guard(engine, agent_id="agent-7", audit=audit_log) as g:

        @g.tool(name="read_file")
        def plain(path: str, encoding: str = "utf-8", mode: str = "r") -> str:
            return path

        @g.tool(name="read_file")
        def varied(path: str, /, *rest: Any, flag: bool = False, **extra: Any) -> str:
            return path

        plain("/workspace/a")
        plain(mode="rb", path="/workspace/b")
        plain("/workspace/c", "latin-1")
        try:
            varied("/workspace/d", 1, 2, flag=True, colour="red")
        except acgs.ToolDenied:
            pass  # the catalogue may refuse unknown arguments; the event still shows them
        for bad in ((), ("/workspace/a",) * 4):
            with pytest.raises(TypeError):
                plain(*bad)
        with pytest.raises(TypeError):
            plain("/workspace/a", path="/workspace/b")
        with pytest.raises(TypeError):
            plain("/workspace/a", nope=1)
        assert g.flush()
    assert [e["metadata"]["arguments"] for e in events(audit_log)] == [
        {"path": "/workspace/a", "encoding": "utf-8", "mode": "r"},
        {"path": "/workspace/b", "encoding": "utf-8", "mode": "rb"},
        {"path": "/workspace/c", "encoding": "latin-1", "mode": "r"},
        {"path": "/workspace/d", "rest": [1, 2], "flag": True, "colour": "red"},
    ]


def test_sessions_share_one_audit_trail_and_a_file_outbox_survives(engine: acgs.Engine, audit_log: AuditLog, tmp_path: Path) -> None:
    with Guard(engine, agent_id="agent-7", session_id="s-a", audit=audit_log) as first:
        second = Guard(engine, agent_id="agent-7", session_id="s-b", audit=first.audit)
        _, read_a, *_ = tools(first)
        _, read_b, *_ = tools(second)
        read_a("/workspace/a")
        read_b("/workspace/b")
        second.close()  # flushes; the trail stays open for its owner
        read_a("/workspace/c")
        assert len(first.history) == 2 and len(second.history) == 1
    assert [e["metadata"]["session_id"] for e in events(audit_log)] == ["s-a", "s-b", "s-a"]
    # The audit service is down: events wait in the outbox file, and the next guard on that file
    # delivers them.
    outbox = tmp_path / "guard-outbox.sqlite3"
    down = Guard(engine, agent_id="agent-7", session_id="s-c", audit="http://127.0.0.1:9", audit_outbox=outbox)
    _, read_c, *_ = tools(down)
    read_c("/workspace/d")
    with pytest.raises(acgs.ToolDenied):
        read_c("/etc/passwd")
    assert not down.flush(0.2) and down.audit is not None and down.audit.pending() == 2
    down.close(0.1)
    with Guard(engine, agent_id="agent-7", audit=audit_log, audit_outbox=outbox) as later:
        assert later.flush()
    got = events(audit_log)
    assert [e["metadata"]["session_id"] for e in got][3:] == ["s-c", "s-c"]
    assert [e["result"] for e in got][3:] == ["allowed", "denied"]
    assert asyncio.run(audit_log.verify()).ok


def test_the_history_json_sent_is_the_history() -> None:
    import orjson

    from acgs.guard import SessionHistory

    for limit in (0, 1, 2, 3, 100):
        history = SessionHistory("s", limit)
        entries = [history.record(f"t{i}", "require_approval", ["x"] if i % 2 else []) for i in range(7)]
        assert orjson.loads(history.json()) == history.snapshot() and len(history) == min(limit, 7)
        history.settle(entries[-1], "approved")
        history.settle(entries[0], "rejected")  # long gone from a short history: no effect
        assert orjson.loads(history.json()) == history.snapshot()
        if limit:
            assert history.snapshot()[-1]["outcome"] == "approved"


def test_a_call_by_name_and_arguments_is_decided_and_audited_like_a_wrapped_one() -> None:
    """``Guard.call`` / ``acall``: what adapters and the MCP proxy use for calls a model or a
    client names. An allowed call runs, a denied one never does, both are in the history."""
    import asyncio

    ran: list[str] = []
    with acgs.Guard(agent_id="agent-7", session_id="by-name") as guard:
        assert guard.call("read_file", {"path": "/workspace/a.txt"}, lambda: ran.append("a") or "ok") == "ok"
        with pytest.raises(acgs.ToolDenied):
            guard.call("db.drop_table", {"table": "users"}, lambda: ran.append("b"))
        with pytest.raises(acgs.ToolInputError):
            guard.call("read_file", {"path": float("nan")}, lambda: ran.append("c"))

        async def fetch() -> str:
            ran.append("d")
            return "page"

        assert asyncio.run(guard.acall("read_file", {"path": "/workspace/b.txt"}, fetch)) == "page"
        assert ran == ["a", "d"]


# -- calls a framework's own approval settled (approved=) ----------------------------------------

SEND = {"to": "bob@example.com", "subject": "hi"}


def test_approved_settles_only_a_call_that_asks_for_approval(engine: acgs.Engine, audit_log: AuditLog) -> None:
    asked: list[str] = []

    def approver(decision: ToolDecision) -> bool:
        asked.append(decision.tool)
        return False

    ran: list[str] = []
    with Guard(engine, agent_id="agent-7", session_id="settled", audit=audit_log, trusted=TRUSTED, approver=approver) as g:
        # True runs it as approved (the guard's own approver is not asked); False refuses it.
        assert g.call("send_email", SEND, lambda: ran.append("yes") or "sent", approved=True, approver="alice") == "sent"
        with pytest.raises(acgs.ToolDenied) as refused:
            g.call("send_email", SEND, lambda: ran.append("no"), approved=False, approver="bob")
        assert refused.value.outcome == "rejected" and refused.value.code == "tool_rejected" and "bob rejected" in str(refused.value)
        # A deny is never turned into a run; an allow stays an allow.
        with pytest.raises(acgs.ToolDenied) as denied:
            g.call("db.drop_table", {"table": "users"}, lambda: ran.append("drop"), approved=True, approver="alice")
        assert denied.value.outcome == "deny"
        assert asyncio.run(g.acall("read_file", {"path": "/workspace/a"}, _async_value("read"), approved=True)) == "read"
        # A person's no is never overridden, not even by an allow.
        with pytest.raises(acgs.ToolDenied) as declined:
            asyncio.run(g.acall("read_file", {"path": "/workspace/a"}, _async_value("read"), approved=False, approver="carol"))
        assert declined.value.outcome == "rejected"
        with pytest.raises(TypeError):
            g.call("send_email", SEND, lambda: None, approved="yes")  # type: ignore[arg-type]
        assert g.flush()
    assert ran == ["yes"] and asked == []
    assert [h["outcome"] for h in g.history.snapshot()] == ["approved", "rejected", "deny", "allow", "rejected"]
    log = events(audit_log)
    assert [e["result"] for e in log] == ["approved", "rejected", "denied", "allowed", "rejected"]
    assert log[4]["metadata"]["rejected_by"] == "carol" and log[4]["metadata"]["outcome"] == "allow"
    assert log[0]["metadata"]["approved_by"] == "alice" and "rejected_by" not in log[0]["metadata"]
    assert log[1]["metadata"]["rejected_by"] == "bob" and "approved_by" not in log[1]["metadata"]
    assert not {"approved_by", "rejected_by"} & (set(log[2]["metadata"]) | set(log[3]["metadata"]))


def _async_value(value: str) -> Any:
    async def run() -> str:
        return value

    return run


class _Counting:
    """The engine, counting its evaluations."""

    def __init__(self, engine: acgs.Engine) -> None:
        self.engine, self.count = engine, 0

    def evaluate_json(self, raw: bytes, entrypoint: str) -> bytes:
        self.count += 1
        out: bytes = self.engine.evaluate_json(raw, entrypoint)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def test_a_call_runs_under_the_decision_that_asked_for_approval(engine: acgs.Engine, audit_log: AuditLog) -> None:
    counting = _Counting(engine)
    with Guard(counting, agent_id="agent-7", session_id="kept", audit=audit_log, trusted=TRUSTED) as g:
        asked = g.decide("send_email", SEND, call_id="c1")
        assert asked.outcome == "require_approval" and g.history.snapshot() == []
        # Deciding the same call again (a graph re-running its node) returns the kept decision.
        assert g.decide("send_email", SEND, call_id="c1") is asked and counting.count == 1
        assert g.call("send_email", SEND, lambda: "sent", approved=True, approver="alice", call_id="c1") == "sent"
        assert counting.count == 1  # one evaluation from the pause to the run

        # Kept once: the same call id again is decided afresh.
        with pytest.raises(acgs.ApprovalRequired) as again:
            g.call("send_email", SEND, lambda: "sent", call_id="c1")
        assert again.value.decision_id != asked.decision_id and counting.count == 2

        # The session moved on between the pause and the run: decided afresh, the asking
        # decision named in the event; other arguments under the same call id: not that call.
        moved = g.decide("send_email", SEND, call_id="c2")
        g.call("read_file", {"path": "/workspace/a"}, lambda: "read")
        g.call("send_email", SEND, lambda: "sent", approved=True, approver="alice", call_id="c2")
        other = g.decide("send_email", SEND, call_id="c3")
        with pytest.raises(acgs.ApprovalRequired):
            g.call("send_email", {**SEND, "subject": "changed"}, lambda: "sent", call_id="c3")
        assert g.flush()
    log = events(audit_log)
    assert [e["result"] for e in log] == ["approved", "approval_required", "allowed", "approved", "approval_required"]
    assert log[0]["decision_id"] == asked.decision_id and log[0]["metadata"]["approved_by"] == "alice"
    assert log[3]["decision_id"] != moved.decision_id and log[3]["metadata"]["approval_decision_id"] == moved.decision_id
    assert log[4]["decision_id"] != other.decision_id and "approval_decision_id" not in log[4]["metadata"]
