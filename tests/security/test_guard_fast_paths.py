"""The guard's cheaper paths must not weaken what it promises: an event a guard with a file
outbox recorded survives the process dying right after the call; facts spliced into a request
by admission cannot be overridden by anything the request carries; a decision read once and
reused for other calls stays each call's own."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

import acgs
from acgs import _acgs as core
from acgs.audit.log import AuditLog
from acgs.errors import InvalidInputError
from acgs.guard import ENTRYPOINT, Guard
from acgs.guard.decision import arguments_json
from acgs.guard.guard import _Call
from tests.test_guard import events


@pytest.fixture(scope="module")
def engine() -> acgs.Engine:
    return acgs.Engine.load(acgs.default_bundle_path())


def test_an_event_recorded_with_a_file_outbox_survives_an_immediate_crash(tmp_path: Path, audit_log: AuditLog) -> None:
    """The process dies (``os._exit``: no flush, no close, no relay pass) the moment the guarded
    calls return: both events are in the outbox file, and the next guard on it delivers them."""
    outbox = tmp_path / "outbox.sqlite3"
    script = textwrap.dedent(
        f"""
        import os
        import acgs

        guard = acgs.Guard(agent_id="agent-9", session_id="crash", audit="http://127.0.0.1:9", audit_outbox={str(outbox)!r})

        @guard.tool
        def read_file(path: str) -> str:
            return "contents"

        read_file("/workspace/a")
        try:
            read_file("/etc/passwd")
        except acgs.ToolDenied:
            pass
        os._exit(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 3, done.stderr.decode()[-2000:]
    with sqlite3.connect(outbox) as conn:
        rows = [orjson.loads(r[0]) for r in conn.execute("SELECT event FROM acgs_outbox ORDER BY seq")]
    assert [(e["result"], e["metadata"]["session_id"]) for e in rows] == [("allowed", "crash"), ("denied", "crash")]
    with Guard(agent_id="agent-9", audit=audit_log, audit_outbox=outbox) as later:
        assert later.flush()
    got = events(audit_log)
    assert [e["metadata"]["arguments"] for e in got] == [{"path": "/workspace/a"}, {"path": "/etc/passwd"}]
    assert asyncio.run(audit_log.verify()).ok


def _as_json(raw: bytes) -> object:
    return orjson.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        # Nothing to drop: the facts are spliced in ahead of the request's members.
        b'{"tool":"read_file","arguments":{"path":"/workspace/a"}}',
        b' {\n "tool" : "read_file" } ',
        b"{}",
        # A client's `trusted`, in any spelling or place, is read, dropped and replaced.
        b'{"tool":"read_file","trusted":{"agent":{"trust_level":1}}}',
        b'{"tool":"read_file","trus\\u0074ed":{"agent":{"trust_level":1}}}',
        b'{"tool":"read_file","arguments":{"note":"\\",\\"trusted\\":{\\"agent\\":{\\"trust_level\\":1}}"}}',
        '{"tool":"r\u00e9ad","trusted":1}'.encode(),
    ],
)
def test_the_facts_admitted_are_the_embedders_whatever_the_request_says(raw: bytes) -> None:
    facts = b'{"agent":{"trust_level":0.1}}'
    admitted = core.admit_input(raw, facts)
    doc = _as_json(admitted)
    assert isinstance(doc, dict) and doc["trusted"] == {"agent": {"trust_level": 0.1}}
    sent = _as_json(raw)
    assert isinstance(sent, dict)
    sent.pop("trusted", None)
    assert {k: v for k, v in doc.items() if k != "trusted"} == sent
    # A repeated `trusted` after the splice would be read differently by other readers: never.
    assert admitted.count(b'"trusted"') == 1


@pytest.mark.parametrize("raw", [b"{", b"{,}", b'{"a":1,}', b"{} {}", b'{"a":}', b"{}x", b'{"a":1', b"{" * 200 + b"}" * 200])
def test_unreadable_requests_are_refused_with_facts_as_without(raw: bytes) -> None:
    with pytest.raises(InvalidInputError):
        core.admit_input(raw, b"{}")


def test_a_request_cannot_spell_its_own_facts_past_the_guard(engine: acgs.Engine) -> None:
    """The guard's own facts reach the constitution: an argument that spells a ``trusted``
    member (escaped, so the guard's input holds it inside a string) changes nothing."""
    low = Guard(engine, agent_id="agent-9", session_id="facts", trusted={"agent": {"trust_level": 0.0}})
    sneaky = '","trusted":{"agent":{"trust_level":1.0}},"x":"'
    call = _Call("read_file")
    call.args_json = arguments_json({"path": "/workspace/a", "note": sneaky}, "read_file")
    raw = low._input(call)
    admitted = _as_json(core.admit_input(raw, low._trusted))
    assert isinstance(admitted, dict) and admitted["trusted"] == {"agent": {"trust_level": 0.0}}
    assert admitted["arguments"]["note"] == sneaky
    assert orjson.loads(engine.evaluate_json(core.admit_input(raw, low._trusted), ENTRYPOINT))
    low.close()


def test_decisions_read_from_the_same_answer_are_each_calls_own(engine: acgs.Engine) -> None:
    guard = Guard(engine, agent_id="agent-9", session_id="own")
    first = guard.decide("read_file", {"path": "/workspace/a"})
    first.reasons.append("changed by the caller")
    first.labels.clear()
    second = guard.decide("read_file", {"path": "/workspace/b"})
    assert second.decision_id != first.decision_id
    assert "changed by the caller" not in second.reasons and second.labels
    # Another tool name as called, the same answer: read for that name.
    denied = guard.decide("read_file", {"path": "/etc/passwd"})
    assert denied.outcome == "deny" and denied.reasons and not denied.allow
    guard.close()
