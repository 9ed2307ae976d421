"""The one interface every audit store implements, and ``open_store(url)`` that picks one.

A store keeps the chain: it places each appended event after the current head (computing its
chain hash through the Rust core while no other writer can move the head), makes the append
durable, and only then acknowledges it. Reads hand back what is stored, unverified.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from acgs.audit.events import Appended, Columns, EventFilter, PreparedEvent, StoredCheckpoint, StoredEvent


class AuditStore(Protocol):
    """Durable, append-only storage of one hash chain and its signed checkpoints."""

    #: ``sqlite`` or ``postgresql``.
    kind: str

    async def open(self) -> None:
        """Creates the tables if needed and starts the writer."""

    async def close(self) -> None:
        """Finishes queued appends, then releases connections."""

    async def append(self, events: Sequence[PreparedEvent]) -> list[Appended]:
        """Appends ``events`` in order after the head; returns once they are durable. Events
        whose idempotency key is already stored are acknowledged as the stored event."""
        ...

    async def size(self) -> int:
        """How many events the log holds."""
        ...

    async def get(self, event_id: str) -> StoredEvent | None: ...

    async def find(self, flt: EventFilter, *, after: int, limit: int) -> list[StoredEvent]:
        """Events matching ``flt`` with index greater than ``after``, by index, at most ``limit``."""
        ...

    async def read(self, start: int, end: int) -> list[StoredEvent]:
        """Stored rows with ``start <= index < end``, by index (missing rows are simply absent)."""
        ...

    async def read_columns(self, start: int, end: int, *, derived: bool = False) -> Columns:
        """Like ``read``, as columns (what verification needs, without an object per row);
        with ``derived``, also the columns copied out of each payload for queries."""
        ...

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint of the largest size."""
        ...

    async def checkpoints(self) -> list[StoredCheckpoint]:
        """All checkpoints by size."""
        ...

    async def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        """Keeps a signed checkpoint; one of the same size already kept wins."""

    async def cursor(self, name: str) -> int:
        """The next index a named consumer of the log (the stream relay) has not yet handled; 0
        for a new one."""
        ...

    async def advance_cursor(self, name: str, next_index: int) -> None:
        """Moves a consumer's cursor forward (never back), durably."""


def open_store(url: str, **options: object) -> AuditStore:
    """``sqlite:///path`` (or a bare path) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        from acgs.audit.postgres import PostgresAuditStore

        return PostgresAuditStore(url, **options)  # type: ignore[arg-type]
    from acgs.audit.sqlite import SQLiteAuditStore

    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    else:
        path = url.removeprefix("sqlite://")
    return SQLiteAuditStore(Path(path), **options)  # type: ignore[arg-type]
