"""Where change requests live: a small ``EvolutionStore`` protocol with one module per backend
(SQLite, the embedded default; PostgreSQL through asyncpg). ``open_store(url)`` picks one.

Business rules stay in ``workflow``; a backend only has to make ``locked(request_id)`` exclusive:
while one transaction holds a request, no other can read it for update or change it, so a
check-then-write in the workflow (is it pending? has this reviewer approved?) is atomic. The audit
events of a change are written to the outbox in the same transaction as the change itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from acgs.services.evolution.records import Approval, AuditEvent, EvolutionRecord, OutboxEntry, Status


class RequestNotFound(LookupError):
    def __init__(self, request_id: str) -> None:
        super().__init__(f"no evolution request {request_id!r}")
        self.request_id = request_id


class RequestTransaction(Protocol):
    """One request, held exclusively until the transaction ends. Leaving the ``async with``
    normally commits; an exception rolls everything back, audit events included."""

    @property
    def record(self) -> EvolutionRecord:
        """The request as it is inside this transaction, approvals included."""
        ...

    async def add_approval(self, approval: Approval) -> bool:
        """Records a reviewer's approval; False when this reviewer already approved."""
        ...

    async def save(self, record: EvolutionRecord) -> EvolutionRecord:
        """Writes the request back; returns it with its new version."""
        ...

    async def audit(self, event: AuditEvent) -> None:
        """Appends an event to the outbox, committed with the change."""
        ...


class EvolutionStore(Protocol):
    async def open(self) -> None:
        """Connects and creates the tables when missing."""
        ...

    async def close(self) -> None: ...

    async def insert(self, record: EvolutionRecord, events: Sequence[AuditEvent]) -> None:
        """Stores a new request and its events in one transaction."""
        ...

    async def get(self, request_id: str) -> EvolutionRecord | None: ...

    async def list_requests(
        self, *, status: Status | None, agent_id: str | None, limit: int, offset: int
    ) -> tuple[list[EvolutionRecord], int]:
        """Requests newest first, and how many match in all."""
        ...

    def locked(self, request_id: str) -> AbstractAsyncContextManager[RequestTransaction]:
        """Holds the request exclusively; raises ``RequestNotFound`` when there is none."""
        ...

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        """Ids of pending requests past their review deadline or validity, and approved ones
        past their validity."""
        ...

    async def outbox(self, *, pending_only: bool, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        """Outbox entries in the order they were written."""
        ...

    async def mark_delivered(self, ids: Sequence[int], now: float) -> None: ...

    async def mark_failed(self, ids: Sequence[int], error: str) -> None: ...

    async def webhook_cursor(self, url: str) -> int:
        """The last outbox id delivered to webhook ``url`` (0 for none)."""
        ...

    async def set_webhook_cursor(self, url: str, last_id: int) -> None:
        """Records that every outbox entry up to ``last_id`` reached webhook ``url``."""
        ...


def open_store(url: str) -> EvolutionStore:
    """A store for ``sqlite:///path`` (or a bare path) or ``postgresql://...``; not yet opened."""
    if url.startswith(("postgresql://", "postgres://")):
        from acgs.services.evolution.store.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        from acgs.services.evolution.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if "://" in url:
        raise ValueError(f"unsupported database URL scheme in {url.split('://', 1)[0]!r}: use sqlite:/// or postgresql://")
    from acgs.services.evolution.store.sqlite import SqliteStore

    return SqliteStore(url)


__all__ = ["EvolutionStore", "RequestNotFound", "RequestTransaction", "open_store"]
