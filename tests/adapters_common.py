"""What the framework adapter tests share: the scripted tools (plain functions each framework
wraps its own way, recording in ``ran`` that they ran), the guard fixture, an engine that counts
its evaluations, and the tool events the audit log holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import acgs
from acgs.audit.events import EventFilter
from acgs.audit.log import AuditLog
from acgs.guard import Guard

TRUSTED = {"agent": {"trust_level": 0.95}}
TRANSFER = {"amount": 500, "currency": "EUR", "to_account": "DE89370400440532013000"}
#: Three calls in three model turns: allowed, denied (outside the workspace), approval (above 100).
THREE_CALLS = (("read_file", {"path": "/workspace/notes.txt"}), ("read_file", {"path": "/etc/passwd"}), ("payments.transfer", TRANSFER))

#: The tools that ran, in order (cleared by the guard fixture).
ran: list[str] = []


def read_file(path: str) -> str:
    """Reads a file of the workspace."""
    ran.append("read_file")
    return f"contents of {path}"


def transfer(amount: int, currency: str, to_account: str) -> str:
    """Transfers money."""
    ran.append("transfer")
    return "transferred"


def read_secret(name: str) -> str:
    """Reads a secret."""
    ran.append("read_secret")
    return "s3cr3t"


def http_get(url: str) -> str:
    """Fetches a URL."""
    ran.append("http_get")
    return "<html>"


class CountingEngine:
    """The shipped constitution's engine, counting the tool decisions it evaluates (the guard
    calls ``evaluate_json``; everything else passes through)."""

    def __init__(self) -> None:
        self.engine = acgs.Engine.load(acgs.default_bundle_path())
        self.evaluations: list[str] = []

    def evaluate_json(self, raw: bytes, entrypoint: str) -> bytes:
        self.evaluations.append(entrypoint)
        result: bytes = self.engine.evaluate_json(raw, entrypoint)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def guard_fixture(agent_id: str, session_id: str) -> Callable[..., Iterator[Guard]]:
    """A ``guard`` fixture for a test module: a guard over a counting engine (``guard.engine``)
    with the shipped constitution, auditing into the test's ``audit_log``; ``ran`` cleared."""

    @pytest.fixture
    def guard(audit_log: AuditLog) -> Iterator[Guard]:
        ran.clear()
        g = Guard(CountingEngine(), agent_id=agent_id, session_id=session_id, audit=audit_log, trusted=TRUSTED)
        yield g
        g.close()

    return guard


def tool_events(g: Guard, log: AuditLog) -> list[dict[str, Any]]:
    """The guard's audit events so far, in order (after delivering them)."""
    assert g.flush()
    stored = asyncio.run(log.store.find(EventFilter(event_type="tool_call"), after=-1, limit=100))
    return [s.event() for s in stored]
