"""``acgs mcp proxy`` between a real MCP client and a real MCP server, both from the official
SDK: the upstream (tests/fixtures/mcp_upstream.py, ``MCPServer``) runs over stdio and records
every call it receives, the guard decides on the real constitution bundle, and audit events land
in a real ``AuditLog``. The proxy is reached in process (both protocol eras), over Streamable
HTTP on a loopback port (several clients, each in its own session), and through the ``acgs mcp
proxy`` command over stdio and over HTTP. An in-process ``MCPServer`` upstream (``more_upstream``)
adds ``http_post``, a resource and a prompt."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from mcp import Client, MCPError, StdioServerParameters
from mcp.server import MCPServer, Server
from mcp.server.mcpserver import Elicit, Resolve, Sample
from mcp.types import (
    INVALID_REQUEST,
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitResult,
    ErrorData,
    Implementation,
    ListToolsResult,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel

import acgs
from acgs import _acgs as core
from acgs.audit.events import EventFilter
from acgs.cli import cli
from acgs.audit.log import AuditLog
from acgs.audit.store import open_store
from acgs.guard import Guard, ReviewApprover, ToolDecision
from acgs.guard.approval import current_call
from acgs.mcp import make_proxy, never_allowed
from acgs.mcp.proxy import PROMPT_GET, RESOURCE_READ, _relay_sampling
from acgs.mcp.serve import bound_port, http_server, parse_listen
from acgs.security import SecuritySettings
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution import create_app as evolution_app
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from tests.services.conftest import ServerThread
from tests.services.procs import free_port

pytestmark = pytest.mark.anyio

UPSTREAM = Path(__file__).parent / "fixtures" / "mcp_upstream.py"
PRIVATE_KEY, _ = core.generate_signing_key("test.acgs/mcp")
TRUSTED = {"agent": {"trust_level": 0.95}}
TOOLS = ["read_file", "read_secret", "http_get", "db.drop_table", "send_email"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(acgs.default_bundle_path())


@pytest.fixture
def calls_file(tmp_path: Path) -> Path:
    return tmp_path / "upstream-calls.jsonl"


def upstream_calls(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def upstream(calls_file: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(UPSTREAM), str(calls_file)])


@pytest.fixture
async def audit_log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    log = AuditLog(open_store(f"sqlite:///{tmp_path / 'audit.sqlite3'}"), PRIVATE_KEY)
    await log.open()
    yield log
    await log.close()


async def tool_events(log: AuditLog) -> list[dict[str, Any]]:
    stored = await log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=1000)
    return [s.event() for s in stored]


def text(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


# -- in process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_calls_are_decided_forwarded_or_refused_and_audited(
    mode: str, engine: acgs.Engine, audit_log: AuditLog, calls_file: Path
) -> None:
    guard = Guard(engine, agent_id="mcp-agent-1", session_id="s-mcp", audit=audit_log, trusted=TRUSTED)
    async with Client(make_proxy(upstream(calls_file), guard), mode=mode) as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        assert listed == ["read_file", "read_secret", "http_get", "send_email"]  # db.drop_table hidden

        allowed = await client.call_tool("read_file", {"path": "/workspace/notes.txt"})
        assert not allowed.is_error and text(allowed) == "contents of /workspace/notes.txt"

        outside = await client.call_tool("read_file", {"path": "/etc/passwd"})
        assert outside.is_error
        assert "argument path" in text(outside) and "/workspace/" in text(outside)
        denial = outside.structured_content["acgs"]
        assert denial["outcome"] == "deny" and denial["reasons"] and denial["decision_id"] in text(outside)

        dropped = await client.call_tool("db.drop_table", {"table": "users"})  # hidden, still decided
        assert dropped.is_error and "db.drop_table is denied by the constitution" in text(dropped)

        email = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "hi"})
        assert email.is_error and "requires approval" in text(email)
        pending = email.structured_content["acgs"]
        assert pending["outcome"] == "approval_required" and pending["decision_id"] in text(email)
        assert pending["approval"]["reviewers"] >= 1

    # Only the allowed call reached the upstream.
    assert upstream_calls(calls_file) == [{"tool": "read_file", "arguments": {"path": "/workspace/notes.txt"}}]

    assert await guard.aflush()
    events = await tool_events(audit_log)
    assert [(e["action"], e["result"]) for e in events] == [
        ("tool.read_file", "allowed"),
        ("tool.read_file", "denied"),
        ("tool.db.drop_table", "denied"),
        ("tool.send_email", "approval_required"),
    ]
    assert {e["decision_id"] for e in events} >= {denial["decision_id"], pending["decision_id"]}
    assert all(e["agent_id"] == "mcp-agent-1" and e["metadata"]["session_id"] == "s-mcp" for e in events)
    assert "result_sha256" in events[0]["metadata"]
    assert "arguments" not in events[3]["metadata"]  # send_email's arguments are redacted
    await guard.aclose()


async def test_session_rule_denies_an_outbound_call_after_a_secret_read(engine: acgs.Engine, calls_file: Path) -> None:
    guard = Guard(engine, agent_id="mcp-agent-2", trusted=TRUSTED)
    async with Client(make_proxy(upstream(calls_file), guard)) as client:
        before = await client.call_tool("http_get", {"url": "https://en.wikipedia.org/wiki/Rego"})
        assert not before.is_error and text(before).startswith("200 OK")
        secret = await client.call_tool("read_secret", {"name": "db_password"})
        assert not secret.is_error and text(secret) == "s3cr3t"
        after = await client.call_tool("http_get", {"url": "https://en.wikipedia.org/wiki/Rego"})
        assert after.is_error
        assert "no_exfiltration_after_secrets" in text(after) and "read_secret" in text(after)
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["http_get", "read_secret"]
    await guard.aclose()


async def test_approval_waits_for_the_guards_approver(engine: acgs.Engine, calls_file: Path) -> None:
    asked: list[ToolDecision] = []

    async def approver(decision: ToolDecision) -> bool:
        asked.append(decision)
        await anyio.sleep(0)
        return decision.tool == "send_email"

    guard = Guard(engine, agent_id="mcp-agent-3", approver=approver)
    async with Client(make_proxy(upstream(calls_file), guard)) as client:
        sent = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "report"})
        assert not sent.is_error and text(sent) == "sent to ann@example.com"
        # Not in the catalogue: the default asks for approval; this approver says no.
        unknown = await client.call_tool("shell.exec", {"cmd": "ls"})
        assert unknown.is_error and "was not approved" in text(unknown)
        assert unknown.structured_content["acgs"]["outcome"] == "rejected"
    assert [d.tool for d in asked] == ["send_email", "shell.exec"]
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["send_email"]
    await guard.aclose()


async def test_missing_or_odd_arguments_are_decided_not_crashed(engine: acgs.Engine, calls_file: Path) -> None:
    guard = Guard(engine, agent_id="mcp-agent-4")
    async with Client(make_proxy(upstream(calls_file), guard, hide_denied=False), mode="legacy") as client:
        assert "db.drop_table" in [t.name for t in (await client.list_tools()).tools]
        bare = await client.call_tool("read_file", None)  # no arguments: decided on {}, never null
        assert bare.is_error and "argument path" in text(bare)
        weird = await client.call_tool("read_file\u200b", {"path": "/workspace/a"})
        assert weird.is_error and "denied" in text(weird)
        huge = await client.call_tool("db.drop_table", {"table": "t", "n": 2**70, "x": 1e308})
        assert huge.is_error and "denied" in text(huge)
    assert upstream_calls(calls_file) == []
    await guard.aclose()


def test_never_allowed_reads_the_catalogue(engine: acgs.Engine) -> None:
    tools = engine.data["acgs"]["constitution"]["tools"]
    assert never_allowed(tools, "db.drop_table") and never_allowed(tools, " DB.Drop_Table ")
    assert never_allowed(tools, "bad name!") and never_allowed(tools, "a..b")
    assert not never_allowed(tools, "read_file") and not never_allowed(tools, "send_email")
    assert not never_allowed(tools, "not.in.catalogue")  # the default asks for approval
    assert never_allowed({**tools, "default": {**tools["default"], "outcome": "deny"}}, "not.in.catalogue")


def test_listen_addresses() -> None:
    assert parse_listen("8123") == ("127.0.0.1", 8123)
    assert parse_listen("127.0.0.1:9") == ("127.0.0.1", 9)
    assert parse_listen("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError):
        parse_listen("localhost:http")


# -- over Streamable HTTP -----------------------------------------------------------------------


async def test_proxy_over_streamable_http_on_loopback(engine: acgs.Engine, audit_log: AuditLog, calls_file: Path) -> None:
    guard = Guard(engine, agent_id="mcp-agent-5", audit=audit_log)
    async with serving(make_proxy(upstream(calls_file), guard)) as url, Client(url) as client:
        assert "db.drop_table" not in [t.name for t in (await client.list_tools()).tools]
        ok = await client.call_tool("read_file", {"path": "/workspace/a.txt"})
        assert not ok.is_error and text(ok) == "contents of /workspace/a.txt"
        no = await client.call_tool("db.drop_table", {"table": "t"})
        assert no.is_error and "denied by the constitution" in text(no)
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["read_file"]
    assert await guard.aflush()
    assert [e["result"] for e in await tool_events(audit_log)] == ["allowed", "denied"]
    await guard.aclose()


def more_upstream(calls: list[dict[str, Any]]) -> MCPServer:
    """An upstream in this process with ``read_secret``, ``http_post``, a resource and a prompt;
    each call it receives lands in ``calls``."""
    server = MCPServer("acgs-test-upstream-more")

    @server.tool()
    def read_secret(name: str) -> str:
        calls.append({"tool": "read_secret", "arguments": {"name": name}})
        return "s3cr3t"

    @server.tool()
    def http_post(url: str, body: str = "") -> str:
        calls.append({"tool": "http_post", "arguments": {"url": url, "body": body}})
        return f"201 Created at {url}"

    @server.resource("notes://{name}")
    def note(name: str) -> str:
        calls.append({"resource": f"notes://{name}"})
        return f"the note {name}"

    @server.prompt()
    def summarise(topic: str) -> str:
        calls.append({"prompt": "summarise", "arguments": {"topic": topic}})
        return f"Summarise {topic}."

    return server


@asynccontextmanager
async def serving(proxy: Any) -> AsyncIterator[str]:
    """Serves ``proxy`` over Streamable HTTP on a free loopback port; yields its URL."""
    async with running(http_server(proxy, "127.0.0.1", 0)) as url:
        yield url


@asynccontextmanager
async def running(server: uvicorn.Server) -> AsyncIterator[str]:
    """Runs ``server`` in this event loop (procs.wait_until would block the loop it waits for)
    and stops it afterwards; yields its MCP URL once it listens."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{bound_port(server)}/mcp"
        finally:
            server.should_exit = True


async def test_each_http_client_has_its_own_session(engine: acgs.Engine, audit_log: AuditLog) -> None:
    calls: list[dict[str, Any]] = []
    asked: list[tuple[str, str]] = []

    async def approver(decision: ToolDecision) -> bool:
        call = current_call.get()
        assert call is not None
        asked.append((call.session_id, decision.tool))
        return True

    trail = Guard(engine, agent_id="mcp-shared", audit=audit_log)  # owns the audit trail
    made: dict[str | None, Guard] = {}
    closed: list[str] = []

    class SessionGuard(Guard):
        async def aclose(self, timeout: float = 5.0) -> None:
            closed.append(self.session_id)
            await super().aclose(timeout)

    def session_guard(mcp_session_id: str | None) -> Guard:
        made[mcp_session_id] = SessionGuard(
            engine, agent_id="mcp-shared", session_id=f"mcp-{mcp_session_id}", audit=trail.audit, approver=approver, trusted=TRUSTED
        )
        return made[mcp_session_id]

    post = {"url": "https://api.github.com/repos/acgs/issues", "body": "hello"}
    async with serving(make_proxy(more_upstream(calls), session_guard)) as url:
        # Both clients in the SDK's default mode: the proxy steers them to sessions.
        async with Client(url, client_info=Implementation(name="mcp-shared-admin", version="1")) as a, Client(url) as b:
            secret = await a.call_tool("read_secret", {"name": "db_password"})
            assert not secret.is_error and text(secret) == "s3cr3t"
            blocked = await a.call_tool("http_post", post)
            assert blocked.is_error and "no_exfiltration_after_secrets" in text(blocked)
            assert blocked.structured_content["acgs"]["outcome"] == "deny"
            # B's session saw no secret: the catalogue's own outcome (approval), approved.
            sent = await b.call_tool("http_post", post)
            assert not sent.is_error and text(sent) == "201 Created at https://api.github.com/repos/acgs/issues"
            # A's session still remembers its secret.
            again = await a.call_tool("http_post", post)
            assert again.is_error and "no_exfiltration_after_secrets" in text(again)
        # A client that leaves ends its session: the proxy closes that session's guard.
        with anyio.fail_after(10):
            while len(closed) < 2:
                await anyio.sleep(0.01)
    assert [c["tool"] for c in calls] == ["read_secret", "http_post"]
    assert len(made) == 2 and None not in made
    session_a, session_b = (g.session_id for g in made.values())
    assert session_a != session_b
    assert asked == [(session_b, "http_post")]
    assert sorted(closed) == sorted([session_a, session_b])
    assert [e["tool"] for e in made[next(iter(made))].history.snapshot()] == ["read_secret", "http_post", "http_post"]
    # One trail, one agent (the operator's, whatever a client calls itself), two sessions.
    assert await trail.aflush()
    events = await tool_events(audit_log)
    assert [(e["metadata"]["session_id"], e["action"], e["result"]) for e in events] == [
        (session_a, "tool.read_secret", "allowed"),
        (session_a, "tool.http_post", "denied"),
        (session_b, "tool.http_post", "approved"),
        (session_a, "tool.http_post", "denied"),
    ]
    assert {e["agent_id"] for e in events} == {"mcp-shared"}
    await trail.aclose()


async def test_an_http_request_without_a_session_is_refused(engine: acgs.Engine) -> None:
    calls: list[dict[str, Any]] = []
    guard = Guard(engine, agent_id="mcp-agent-12", trusted=TRUSTED)
    async with serving(make_proxy(more_upstream(calls), guard)) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            # The 2026-07-28 protocol has no sessions: refused, naming the versions that have.
            modern = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}},
                headers={"MCP-Protocol-Version": "2026-07-28", "Accept": "application/json, text/event-stream"},
            )
            assert modern.status_code == 400
            error = modern.json()["error"]
            assert error["code"] == -32022 and "2025-11-25" in error["data"]["supported"]
        async with Client(url, mode="legacy") as client:
            assert not (await client.call_tool("read_secret", {"name": "x"})).is_error
    # Served without that front (the SDK's own app, stateless): the proxy itself refuses calls
    # it cannot place in a session, rather than decide them on an empty history.
    app = make_proxy(more_upstream(calls), guard).streamable_http_app(stateless_http=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    async with running(server) as url, Client(url) as client:
        with pytest.raises(MCPError, match="keeps one session per MCP client") as refused:
            await client.call_tool("read_secret", {"name": "x"})
        assert refused.value.code == INVALID_REQUEST
    assert calls == [{"tool": "read_secret", "arguments": {"name": "x"}}]
    await guard.aclose()


async def test_resources_and_prompts_pass_through_decided_and_audited(engine: acgs.Engine, audit_log: AuditLog) -> None:
    calls: list[dict[str, Any]] = []
    asked: list[ToolDecision] = []

    def approver(decision: ToolDecision) -> bool:
        asked.append(decision)
        return decision.tool == RESOURCE_READ

    guard = Guard(engine, agent_id="mcp-agent-13", audit=audit_log, approver=approver)
    async with Client(make_proxy(more_upstream(calls), guard)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["notes://{name}"]
        assert [p.name for p in (await client.list_prompts()).prompts] == ["summarise"]
        # Not in the catalogue: the default asks for approval; this approver allows reads.
        note = await client.read_resource("notes://plan")
        assert [c.text for c in note.contents] == ["the note plan"]
        with pytest.raises(MCPError) as refused:
            await client.get_prompt("summarise", {"topic": "q3"})
        assert refused.value.code == INVALID_REQUEST and "was not approved" in refused.value.message
        assert refused.value.data["acgs"]["tool"] == PROMPT_GET
    assert calls == [{"resource": "notes://plan"}]
    assert [(d.tool, d.outcome) for d in asked] == [(RESOURCE_READ, "require_approval"), (PROMPT_GET, "require_approval")]
    assert await guard.aflush()
    events = await tool_events(audit_log)
    assert [(e["action"], e["result"]) for e in events] == [("tool.mcp.resources.read", "approved"), ("tool.mcp.prompts.get", "rejected")]
    assert events[0]["metadata"]["arguments"] == {"uri": "notes://plan"} and "result_sha256" in events[0]["metadata"]
    assert events[1]["metadata"]["arguments"] == {"name": "summarise", "arguments": {"topic": "q3"}}
    await guard.aclose()


async def test_resource_reads_follow_the_default_and_an_upstream_may_offer_none(engine: acgs.Engine) -> None:
    tools = engine.data["acgs"]["constitution"]["tools"]
    catalogue = {**tools["catalogue"], RESOURCE_READ: {"risk": "low", "outcome": "deny", "labels": []}}
    denying = {**tools, "catalogue": catalogue}
    assert never_allowed(denying, RESOURCE_READ) and not never_allowed(denying, PROMPT_GET)
    calls: list[dict[str, Any]] = []
    guard = Guard(engine, agent_id="mcp-agent-14")
    async with Client(make_proxy(more_upstream(calls), guard)) as client:
        # Without an approver the default (approval) refuses the read, naming the decision.
        with pytest.raises(MCPError) as refused:
            await client.read_resource("notes://plan")
        assert "requires approval" in refused.value.message
        assert refused.value.data["acgs"]["outcome"] == "approval_required"
    # An upstream that offers neither (a low-level server with tools only): empty lists, and
    # reads are unknown methods, never decided.
    async def no_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(tools=[])

    async with Client(make_proxy(Server("tools-only", on_list_tools=no_tools), guard)) as client:
        assert (await client.list_resources()).resources == [] and (await client.list_prompts()).prompts == []
        with pytest.raises(MCPError, match="offers no resources"):
            await client.read_resource("notes://plan")
        with pytest.raises(MCPError, match="offers no prompts"):
            await client.get_prompt("summarise")
    assert calls == [] and len(guard.history) == 1
    await guard.aclose()


# -- the command --------------------------------------------------------------------------------


async def test_acgs_mcp_proxy_command_over_stdio(tmp_path: Path, calls_file: Path) -> None:
    audit_path = tmp_path / "proxy-audit.sqlite3"
    command = f"{sys.executable} {UPSTREAM} {calls_file}"
    env = {**os.environ, "ACGS_DATA_DIR": str(tmp_path / "data")}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "acgs", "mcp", "proxy", "--upstream-command", command, "--agent-id", "cli-agent", "--audit", str(audit_path)],
        env=env,
    )
    async with Client(params) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["read_file", "read_secret", "http_get", "send_email"]
        ok = await client.call_tool("read_file", {"path": "/workspace/a.txt"})
        assert not ok.is_error and text(ok) == "contents of /workspace/a.txt"
        no = await client.call_tool("db.drop_table", {"table": "t"})
        assert no.is_error and "denied by the constitution" in text(no)
    # The proxy delivered its audit events before it exited.
    store = open_store(f"sqlite:///{audit_path}")
    await store.open()
    try:
        stored = await store.find(EventFilter(event_type="tool_call"), after=-1, limit=100)
        events = [s.event() for s in stored]
    finally:
        await store.close()
    assert [(e["action"], e["result"], e["agent_id"]) for e in events] == [
        ("tool.read_file", "allowed", "cli-agent"),
        ("tool.db.drop_table", "denied", "cli-agent"),
    ]
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["read_file"]


async def listening(port: int) -> None:
    """Waits (up to 30 s) until something accepts connections on the loopback port."""
    with anyio.fail_after(30):
        while True:
            try:
                await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                return
            except OSError:
                await anyio.sleep(0.05)



async def test_acgs_mcp_proxy_command_over_http_keeps_a_session_per_client(tmp_path: Path, calls_file: Path) -> None:
    audit_path = tmp_path / "proxy-audit.sqlite3"
    port = free_port()
    command = f"{sys.executable} {UPSTREAM} {calls_file}"
    args = ["mcp", "proxy", "--upstream-command", command, "--listen", str(port), "--agent-id", "cli-agent"]
    args += ["--session-id", "ops", "--audit", str(audit_path)]
    env = {**os.environ, "ACGS_DATA_DIR": str(tmp_path / "data")}
    process = await anyio.open_process([sys.executable, "-m", "acgs", *args], env=env)
    try:
        await listening(port)
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as a, Client(url) as b:
            for client, path in ((a, "/workspace/a.txt"), (b, "/workspace/b.txt"), (a, "/workspace/c.txt")):
                assert not (await client.call_tool("read_file", {"path": path})).is_error
    finally:
        process.terminate()  # uvicorn stops on SIGTERM; the proxy delivers its audit events
        with anyio.fail_after(30):
            await process.wait()
    store = open_store(f"sqlite:///{audit_path}")
    await store.open()
    try:
        events = [s.event() for s in await store.find(EventFilter(event_type="tool_call"), after=-1, limit=100)]
    finally:
        await store.close()
    sessions = [e["metadata"]["session_id"] for e in events]
    assert len(events) == 3 and {e["agent_id"] for e in events} == {"cli-agent"}
    assert sessions[0] == sessions[2] != sessions[1] and all(s.startswith("ops-") for s in sessions)


# -- an upstream over Streamable HTTP; a remote guard -------------------------------------------


async def test_upstream_over_streamable_http(engine: acgs.Engine, calls_file: Path) -> None:
    port = free_port()
    process = await anyio.open_process([sys.executable, str(UPSTREAM), str(calls_file), "--http", str(port)])
    try:
        await listening(port)
        guard = Guard(engine, agent_id="mcp-agent-6")
        async with Client(make_proxy(f"http://127.0.0.1:{port}/mcp", guard)) as client:
            assert "db.drop_table" not in [t.name for t in (await client.list_tools()).tools]
            ok = await client.call_tool("http_get", {"url": "https://pypi.org/simple/acgs/"})
            assert not ok.is_error and text(ok) == "200 OK from https://pypi.org/simple/acgs/"
            no = await client.call_tool("http_get", {"url": "https://attacker.example/x"})
            assert no.is_error and "argument url" in text(no)
        await guard.aclose()
    finally:
        process.terminate()
        await process.wait()
    assert upstream_calls(calls_file) == [{"tool": "http_get", "arguments": {"url": "https://pypi.org/simple/acgs/"}}]


def test_remote_guard_hides_and_decides_through_the_policy_service(tmp_path: Path, calls_file: Path) -> None:
    app = policy_app(PolicySettings(data_dir=tmp_path, bundle=acgs.default_bundle_path()), security=SecuritySettings())

    async def session(url: str) -> None:
        made: list[Guard] = []
        async with httpx.AsyncClient(timeout=10) as http:
            # As the command makes them: a guard per client session, one HTTP client for all.
            def session_guard(mcp_session_id: str | None) -> Guard:
                made.append(Guard(url=url, agent_id="mcp-agent-7", async_http_client=http))
                return made[-1]

            async with Client(make_proxy(upstream(calls_file), session_guard)) as client:
                assert "db.drop_table" not in [t.name for t in (await client.list_tools()).tools]
                ok = await client.call_tool("read_file", {"path": "/workspace/a.txt"})
                assert not ok.is_error
                no = await client.call_tool("db.drop_table", {"table": "t"})
                assert no.is_error and "denied by the constitution" in text(no)
            assert not http.is_closed  # the guards closed, the shared client is the caller's
        assert len(made) == 1 and [e["tool"] for e in made[0].history.snapshot()] == ["read_file", "db.drop_table"]

    with ServerThread(app) as server:
        anyio.run(session, f"http://127.0.0.1:{server.port}")
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["read_file"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --upstream-command and --upstream-url"),
        (["--upstream-command", "x", "--upstream-url", "http://127.0.0.1:1/mcp"], "exactly one"),
        (["--upstream-url", "file:///etc/passwd"], "http:// or https://"),
        (["--upstream-url", "http://127.0.0.1:1/mcp", "--listen", "0.0.0.0:8080"], "not a loopback address"),
        (["--upstream-url", "http://127.0.0.1:1/mcp", "--listen", "host:port"], "expected HOST:PORT"),
        (["--upstream-command", "   "], "--upstream-command is empty"),
    ],
)
def test_command_refuses_unclear_or_exposed_setups(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["mcp", "proxy", *args])
    assert result.exit_code == 2 and message in result.output


async def test_upstream_errors_pass_through_and_a_dead_upstream_is_named(
    engine: acgs.Engine, audit_log: AuditLog, calls_file: Path
) -> None:
    guard = Guard(engine, agent_id="mcp-agent-8", audit=audit_log, approver=lambda decision: True)
    async with Client(make_proxy(upstream(calls_file), guard)) as client:
        # Approved (unknown tools need approval), forwarded, and the upstream's own tool error.
        unknown = await client.call_tool("no.such_tool", {"a": 1})
        assert unknown.is_error and "Unknown tool: no.such_tool" in text(unknown)
        with pytest.raises(MCPError, match="the upstream MCP server closed the connection"):
            await client.call_tool("read_file", {"path": "/workspace/exit"})
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["read_file"]
    assert await guard.aflush()
    events = await tool_events(audit_log)
    assert [(e["action"], e["result"]) for e in events] == [("tool.no.such_tool", "approved"), ("tool.read_file", "failed")]
    assert events[1]["metadata"]["error"].startswith("MCPError: ")  # the upstream's failure, as the guard saw it
    await guard.aclose()


# -- approval by reviewers over REST (the evolution service's workflow) -------------------------


def review_when_pending(base: str, verdict: str) -> threading.Thread:
    """A reviewer: waits for the pending action request, then posts ``verdict`` on it."""

    def run() -> None:
        headers = {"X-ACGS-Identity": "rita", "X-ACGS-Role": "reviewer"}
        with httpx.Client(base_url=base, timeout=10) as http:
            while not (page := http.get("/evolution/requests", params={"status": "pending"}, headers=headers).json())["items"]:
                time.sleep(0.01)  # the MCP call is on its way to the service
            request_id = page["items"][0]["request_id"]
            r = http.post(f"/evolution/requests/{request_id}/{verdict}", json={"reason": f"rita says {verdict}"}, headers=headers)
            assert r.status_code == 200, r.text

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def evolution(tmp_path: Path) -> Iterator[str]:
    settings = EvolutionSettings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0)
    with ServerThread(evolution_app(settings, security=SecuritySettings(auth=False))) as server:
        yield f"http://127.0.0.1:{server.port}"


def test_a_reviewer_approves_over_rest_while_the_mcp_call_waits(
    engine: acgs.Engine, evolution: str, tmp_path: Path, calls_file: Path
) -> None:
    async def session() -> None:
        guard = Guard(engine, agent_id="mcp-agent-9", approver=ReviewApprover(evolution, timeout=30, poll=0.02))
        async with Client(make_proxy(upstream(calls_file), guard)) as client:
            reviewer = review_when_pending(evolution, "approve")
            sent = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "q3"})
            reviewer.join(10)
            assert not sent.is_error and text(sent) == "sent to ann@example.com"
            reviewer = review_when_pending(evolution, "reject")
            refused = await client.call_tool("send_email", {"to": "bob@example.com", "subject": "q3"})
            reviewer.join(10)
            assert refused.is_error and "was not approved" in text(refused)
        await guard.aclose()

    anyio.run(session)
    assert upstream_calls(calls_file) == [{"tool": "send_email", "arguments": {"to": "ann@example.com", "subject": "q3", "body": ""}}]


async def test_an_unreachable_review_service_refuses_the_call(engine: acgs.Engine, calls_file: Path) -> None:
    guard = Guard(engine, agent_id="mcp-agent-11", approver=ReviewApprover(f"http://127.0.0.1:{free_port()}", timeout=5))
    async with Client(make_proxy(upstream(calls_file), guard)) as client:
        refused = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "hi"})
        assert refused.is_error and "unreachable" in text(refused)
    assert upstream_calls(calls_file) == []
    await guard.aclose()


def test_a_pending_approval_is_resumed_by_the_same_call(engine: acgs.Engine, evolution: str, calls_file: Path) -> None:
    async def first(guard: Guard, client: Client) -> str:
        held = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "later"})
        assert held.is_error and "waiting for reviewers" in text(held)
        info = held.structured_content["acgs"]
        assert info["outcome"] == "approval_pending" and info["approval_request"]["request_id"] in text(held)
        return str(info["approval_request"]["request_id"])

    async def session() -> None:
        guard = Guard(engine, agent_id="mcp-agent-10", approver=ReviewApprover(evolution, timeout=0))
        async with Client(make_proxy(upstream(calls_file), guard)) as client:
            request_id = await first(guard, client)
            assert upstream_calls(calls_file) == []
            headers = {"X-ACGS-Identity": "rita", "X-ACGS-Role": "reviewer"}
            async with httpx.AsyncClient(base_url=evolution, timeout=10) as http:
                r = await http.post(f"/evolution/requests/{request_id}/approve", json={"reason": "fine"}, headers=headers)
                assert r.status_code == 200, r.text
            again = await client.call_tool("send_email", {"subject": "later", "to": "ann@example.com"})
            assert not again.is_error and text(again) == "sent to ann@example.com"
            # One approval runs one call: asking a third time opens a new request.
            third = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "later"})
            assert third.is_error and third.structured_content["acgs"]["approval_request"]["request_id"] != request_id
        await guard.aclose()

    anyio.run(session)
    assert [c["tool"] for c in upstream_calls(calls_file)] == ["send_email"]


async def test_acgs_mcp_proxy_command_holds_approvals_for_reviewers(tmp_path: Path, evolution: str, calls_file: Path) -> None:
    command = f"{sys.executable} {UPSTREAM} {calls_file}"
    args = ["-m", "acgs", "mcp", "proxy", "--upstream-command", command, "--review-url", evolution, "--review-wait", "0"]
    params = StdioServerParameters(command=sys.executable, args=args, env={**os.environ, "ACGS_DATA_DIR": str(tmp_path / "data")})
    async with Client(params) as client:
        held = await client.call_tool("send_email", {"to": "ann@example.com", "subject": "hi"})
        assert held.is_error and held.structured_content["acgs"]["outcome"] == "approval_pending"
    async with httpx.AsyncClient(base_url=evolution, timeout=10) as http:
        page = (await http.get("/evolution/requests", params={"status": "pending"}, headers={"X-ACGS-Identity": "rita"})).json()
    assert [item["request_id"] for item in page["items"]] == [held.structured_content["acgs"]["approval_request"]["request_id"]]
    assert upstream_calls(calls_file) == []


# -- sampling and elicitation: the upstream asks the client, through the proxy -------------------


class Confirm(BaseModel):
    ok: bool


# The upstream's questions (module level: the SDK reads the tools' annotations by name).
def summary_of(topic: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=f"summarise {topic}"))], max_tokens=20)


def confirmation_of(path: str) -> Elicit[Confirm]:
    return Elicit(f"delete {path}?", Confirm)


def asking_upstream(calls: list[dict[str, Any]]) -> MCPServer:
    """An upstream in this process whose tools ask the client mid-call: ``ask_model`` samples
    the client's model (``sampling/createMessage``), ``ask_user`` asks the user
    (``elicitation/create``); each answer the upstream gets lands in ``calls``."""
    server = MCPServer("acgs-test-upstream-asking")

    @server.tool()
    def ask_model(topic: str, summary: Annotated[CreateMessageResult, Resolve(summary_of)]) -> str:
        said = getattr(summary.content, "text", "")
        calls.append({"tool": "ask_model", "model": summary.model, "said": said})
        return f"the model says: {said}"

    @server.tool()
    def ask_user(path: str, confirmed: Annotated[Confirm, Resolve(confirmation_of)]) -> str:
        calls.append({"tool": "ask_user", "ok": confirmed.ok})
        return f"deleted {path}" if confirmed.ok else f"kept {path}"

    return server


class AnsweringClient:
    """A client's answers to sampling and elicitation, and what it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked: list[tuple[str, Any]] = []

    async def sample(self, context: Any, params: CreateMessageRequestParams) -> CreateMessageResult:
        self.asked.append(("sampling", params.messages[0].content.text))  # type: ignore[union-attr]
        reply = TextContent(type="text", text=f"{self.name} read it")
        return CreateMessageResult(role="assistant", content=reply, model=f"model-of-{self.name}")

    async def elicit(self, context: Any, params: Any) -> ElicitResult:
        self.asked.append(("elicitation", params.message))
        return ElicitResult(action="accept", content={"ok": True})


def approving_guard(engine: acgs.Engine, agent: str) -> Guard:
    # ask_model and ask_user are not in the catalogue: the default holds them for approval.
    return Guard(engine, agent_id=agent, trusted=TRUSTED, approver=lambda decision: True)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sampling_and_elicitation_are_relayed_to_the_calling_client(mode: str, engine: acgs.Engine) -> None:
    calls: list[dict[str, Any]] = []
    answers = AnsweringClient("ann")
    guard = approving_guard(engine, "mcp-agent-ask")
    proxy = make_proxy(asking_upstream(calls), guard)
    async with Client(proxy, mode=mode, sampling_callback=answers.sample, elicitation_callback=answers.elicit) as client:
        if mode == "auto":
            # An in-process client on the 2026-07-28 protocol has no channel for a request from
            # the server: the call fails with an MCP error naming the refusal; nothing hangs.
            for tool, args, method in (
                ("ask_model", {"topic": "q3"}, "sampling/createMessage"),
                ("ask_user", {"path": "/workspace/old"}, "elicitation/create"),
            ):
                with anyio.fail_after(30), pytest.raises(MCPError) as refused:
                    await client.call_tool(tool, args)
                assert refused.value.code == INVALID_REQUEST and method in refused.value.message
                assert "cannot take requests from the server" in refused.value.message
            await guard.aclose()
            assert answers.asked == [] and calls == []
            return
        sampled = await client.call_tool("ask_model", {"topic": "q3"})
        confirmed = await client.call_tool("ask_user", {"path": "/workspace/old"})
    await guard.aclose()
    assert not sampled.is_error and text(sampled) == "the model says: ann read it", text(sampled)
    assert not confirmed.is_error and text(confirmed) == "deleted /workspace/old", text(confirmed)
    assert answers.asked == [("sampling", "summarise q3"), ("elicitation", "delete /workspace/old?")]
    assert calls == [{"tool": "ask_model", "model": "model-of-ann", "said": "ann read it"}, {"tool": "ask_user", "ok": True}]


async def test_each_http_client_answers_only_its_own_calls_requests(engine: acgs.Engine) -> None:
    """Two clients over Streamable HTTP call the same sampling tool at once: each is asked on
    its own call's stream and the upstream gets each client's own answer."""
    calls: list[dict[str, Any]] = []
    guards: list[Guard] = []

    def session_guard(mcp_session_id: str | None) -> Guard:
        guards.append(approving_guard(engine, "mcp-agent-http-ask"))
        return guards[-1]

    ann, bob = AnsweringClient("ann"), AnsweringClient("bob")
    results: dict[str, str] = {}
    async with serving(make_proxy(asking_upstream(calls), session_guard)) as url:

        async def use(who: AnsweringClient) -> None:
            async with Client(url, sampling_callback=who.sample, elicitation_callback=who.elicit) as client:
                result = await client.call_tool("ask_model", {"topic": who.name})
                assert not result.is_error, text(result)
                results[who.name] = text(result)

        async with anyio.create_task_group() as tg:
            tg.start_soon(use, ann)
            tg.start_soon(use, bob)
    for guard in guards:
        await guard.aclose()
    assert results == {"ann": "the model says: ann read it", "bob": "the model says: bob read it"}
    assert ann.asked == [("sampling", "summarise ann")] and bob.asked == [("sampling", "summarise bob")]
    assert sorted(c["model"] for c in calls) == ["model-of-ann", "model-of-bob"]


async def test_a_client_that_offers_no_sampling_is_named_not_left_waiting(engine: acgs.Engine) -> None:
    calls: list[dict[str, Any]] = []
    guard = approving_guard(engine, "mcp-agent-no-sampling")
    async with Client(make_proxy(asking_upstream(calls), guard), mode="legacy") as client:
        with anyio.fail_after(30), pytest.raises(MCPError) as refused:
            await client.call_tool("ask_model", {"topic": "q3"})
    await guard.aclose()
    assert refused.value.code == INVALID_REQUEST
    assert "does not offer sampling" in refused.value.message and "sampling/createMessage" in refused.value.message
    assert calls == []


async def test_a_request_tied_to_no_call_is_refused_by_name() -> None:
    """What an upstream on an older protocol sends as a request of its own names no call: the
    proxy cannot tell whose client should answer it, and refuses it with an MCP error."""
    params = CreateMessageRequestParams(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text="hi"))], max_tokens=5
    )
    refused = await _relay_sampling(None, params)  # type: ignore[arg-type]
    assert isinstance(refused, ErrorData) and refused.code == INVALID_REQUEST
    assert "sampling/createMessage" in refused.message and "names no call" in refused.message
