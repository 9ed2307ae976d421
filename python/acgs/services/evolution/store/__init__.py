"""Where change requests live: a small ``EvolutionStore`` protocol with one module per backend
(SQLite, the embedded default; PostgreSQL through asyncpg). ``open_store(url)`` picks one.

Business rules stay in ``workflow``; a backend only has to make ``locked(request_id)`` exclusive:
while one transaction holds a request, no other can read it for update or change it, so a
check-then-write in the workflow (is it pending? has this reviewer approved?) is atomic. The audit
events of a change are written to the outbox in the same transaction as the change itself:
ACGS's one audit outbox (``acgs.audit.outbox``), created in the store's database. The store is
the outbox relay's source (``OutboxRelay(store, sink)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from acgs.audit.outbox import Entry, RelaySource

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

    # The relay's source (``acgs.audit.outbox.RelaySource``).
    producer: str

    async def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]: ...

    async def depth(self) -> int: ...

    async def mark_delivered(self, seqs: Sequence[int]) -> None: ...

    async def mark_failed(self, seqs: Sequence[int], error: str) -> None: ...

    async def dead_letter(self, seq: int, reason: str, replacement: Mapping[str, Any]) -> None: ...

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]: ...

    async def webhook_cursor(self, url: str) -> int:
        """The last outbox id delivered to webhook ``url`` (0 for none)."""
        ...

    async def set_webhook_cursor(self, url: str, last_id: int) -> None:
        """Records that every outbox entry up to ``last_id`` reached webhook ``url``."""
        ...


PRODUCER = "evolution"


class OutboxSource:
    """The relay's source and the outbox readers of a store, handed to the store's outbox
    (``self._outbox``, an ``acgs.audit.outbox`` SqliteOutbox or PostgresOutbox)."""

    producer = PRODUCER
    _outbox: Any

    async def pending(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        result: list[tuple[int, dict[str, Any]]] = await self._outbox.pending(limit)
        return result

    async def depth(self) -> int:
        return int(await self._outbox.depth())

    async def mark_delivered(self, seqs: Sequence[int]) -> None:
        await self._outbox.mark_delivered(seqs)

    async def mark_failed(self, seqs: Sequence[int], error: str) -> None:
        await self._outbox.mark_failed(seqs, error)

    async def dead_letter(self, seq: int, reason: str, replacement: Mapping[str, Any]) -> None:
        await self._outbox.dead_letter(seq, reason, replacement)

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._outbox.dead_letters(limit)
        return result

    async def outbox(self, *, pending_only: bool, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        entries: list[Entry] = await self._outbox.entries(pending_only=pending_only, limit=limit, after=after_id)
        return [
            OutboxEntry(
                id=e.seq, event=e.event, created_at=e.enqueued_at, delivered_at=e.delivered_at,  # type: ignore[arg-type]
                attempts=e.attempts, last_error=e.last_error,
            )
            for e in entries
        ]


if TYPE_CHECKING:

    def _is_source(store: OutboxSource) -> RelaySource:  # mypy: a store is a relay source
        return store


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


__all__ = ["PRODUCER", "EvolutionStore", "OutboxSource", "RequestNotFound", "RequestTransaction", "open_store"]
