"""``AuditLog``: the transparency log over a store. It appends events, signs checkpoints of the
Merkle tree over them, proves inclusion and consistency, verifies stored ranges and exports
self-contained segments. Every hash, proof and signature is made by the Rust core.

The log signs only what it has verified: before a checkpoint covers new events, their stored
payloads are re-hashed and the chain checked (``verify_chain``), and the Merkle leaves come from
those verified hashes. A log whose rows were altered refuses to sign (``AuditIntegrityError``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from acgs import _acgs as core
from acgs.audit.events import GENESIS, Appended, Columns, PreparedEvent, StoredCheckpoint, prepare
from acgs.audit.export import EXPORT_FORMAT
from acgs.audit.keys import key_name
from acgs.audit.store import AuditStore
from acgs.errors import AuditArgumentError, AuditIntegrityError

#: Rows read and verified per step.
CHUNK = 50_000


@dataclass(slots=True)
class VerifyReport:
    """The outcome of re-hashing a range of the stored log."""

    start: int
    end: int
    checked: int = 0
    first_bad_index: int | None = None
    reason: str | None = None
    detail: str | None = None
    #: The latest signed checkpoint the range was held to (size), if any.
    checkpoint_size: int | None = None
    checkpoint_ok: bool | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None and self.checkpoint_ok is not False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "start": self.start,
            "end": self.end,
            "checked": self.checked,
            "first_bad_index": self.first_bad_index,
            "reason": self.reason,
            "detail": self.detail,
            "checkpoint": None
            if self.checkpoint_size is None
            else {"size": self.checkpoint_size, "root_matches": self.checkpoint_ok},
            "seconds": round(self.seconds, 6),
        }


@dataclass(slots=True)
class _Verified:
    """Leaf hashes of the verified prefix of the log, and the chain hash after it."""

    leaves: list[bytes] = field(default_factory=list)
    chain: bytes = GENESIS


def _rows_report(prev: bytes, rows: Columns, first: int) -> Any:
    return core.verify_chain(prev, rows.payloads, rows.content_hashes, rows.chain_hashes, first, rows.indices)


class AuditLog:
    """One log: a store, its origin and its signing key. ``open`` before use."""

    def __init__(
        self,
        store: AuditStore,
        private_key: str,
        *,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.private_key = private_key
        self.origin = origin or key_name(private_key)
        self.clock = clock
        self._verified = _Verified()
        self._lock = asyncio.Lock()
        # Builds the verifier key string (and checks the key) once.
        self.verifier_key = core.Checkpointer(private_key, self.origin).verifier_key
        self.appended = 0
        self.duplicates = 0

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    # -- appends -----------------------------------------------------------------------------

    def prepare(self, events: Sequence[Mapping[str, Any]]) -> list[PreparedEvent]:
        """Checks and canonicalises events (``InvalidAuditEvent`` on the first bad one)."""
        ts_us = int(self.clock() * 1_000_000)
        return [prepare(e, ts_us=ts_us) for e in events]

    async def append(self, events: Sequence[Mapping[str, Any]]) -> list[Appended]:
        """Appends events durably, in order; returns their receipts once committed."""
        return await self.append_prepared(self.prepare(events))

    async def append_prepared(self, prepared: Sequence[PreparedEvent]) -> list[Appended]:
        out = await self.store.append(prepared)
        for a in out:
            if a.duplicate:
                self.duplicates += 1
            else:
                self.appended += 1
        return out

    # -- the verified tree -------------------------------------------------------------------

    async def _extend(self, size: int) -> list[bytes]:
        """Leaf hashes of the first ``size`` events, verifying any not verified before."""
        v = self._verified
        while len(v.leaves) < size:
            start = len(v.leaves)
            end = min(size, start + CHUNK)
            rows = await self.store.read_columns(start, end)
            report = _rows_report(v.chain, rows, start)
            if not report.ok:
                raise AuditIntegrityError(
                    f"event {report.first_bad_index} does not verify ({report.reason}): {report.detail}"
                )
            if len(rows.indices) < end - start:
                raise AuditIntegrityError(f"event {start + len(rows.indices)} is missing from the store")
            leaf = core.leaf_hash
            v.leaves.extend([leaf(c) for c in rows.content_hashes])
            v.chain = report.last_chain_hash
        return v.leaves

    async def checkpoint(self, *, refresh: bool = True) -> StoredCheckpoint | None:
        """The latest signed checkpoint; with ``refresh``, first signs one covering the whole
        log if it grew since the last (consistent with it, or refused). None for an empty log
        that was never signed."""
        async with self._lock:
            latest = await self.store.latest_checkpoint()
            if not refresh:
                return latest
            size = await self.store.size()
            if size == 0 or (latest is not None and latest.size >= size):
                return latest
            leaves = await self._extend(size)
            root = core.merkle_root(leaves[:size])
            signer = core.Checkpointer(self.private_key, self.origin, latest.note if latest else None)
            proof = core.consistency_proof(leaves, latest.size, size) if latest else []
            note = signer.sign(size, root, proof)
            made = StoredCheckpoint(size, root, note, int(self.clock() * 1_000_000))
            await self.store.save_checkpoint(made)
            return made

    async def inclusion(self, index: int, checkpoint: StoredCheckpoint) -> list[bytes]:
        async with self._lock:
            leaves = await self._extend(checkpoint.size)
            return core.inclusion_proof(leaves, index, checkpoint.size)

    async def consistency(self, m: int, n: int) -> tuple[list[bytes], bytes, bytes]:
        """The consistency proof from the tree of size ``m`` to size ``n``, with both roots."""
        if not 0 <= m <= n:
            raise AuditArgumentError(f"need 0 <= from <= to, got from={m} to={n}")
        size = await self.store.size()
        if n > size:
            raise AuditArgumentError(f"the log has {size} events; to={n} is beyond it")
        async with self._lock:
            leaves = await self._extend(n)
            return (
                core.consistency_proof(leaves, m, n),
                core.merkle_root(leaves[:m]),
                core.merkle_root(leaves[:n]),
            )

    # -- verification ------------------------------------------------------------------------

    async def verify(
        self, start: int = 0, end: int | None = None, *, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Re-hashes every stored payload of ``[start, end)`` (default: the whole log) and checks
        the chain; when the range starts at 0 it also holds the log to the latest signed
        checkpoint (its size and Merkle root), which catches a truncated tail or a chain
        recomputed after an edit. A range starting later is anchored at the stored chain hash
        before it."""
        began = time.perf_counter()
        size = await self.store.size()
        end = size if end is None else end
        if not 0 <= start <= end:
            raise AuditArgumentError(f"need 0 <= from <= to, got from={start} to={end}")
        report = VerifyReport(start=start, end=end)
        latest = await self.store.latest_checkpoint() if start == 0 else None
        prev = GENESIS
        if start > 0:
            before = await self.store.read(start - 1, start)
            if not before:
                report.first_bad_index, report.reason = start - 1, "index_gap"
                report.detail = f"event {start - 1}, the anchor of the range, is missing"
                return report
            prev = before[0].chain_hash
        leaves: list[bytes] = []
        want_leaves = latest is not None and latest.size <= end
        pos = start
        while pos < end:
            stop = min(end, pos + CHUNK)
            rows = await self.store.read_columns(pos, stop)
            result = _rows_report(prev, rows, pos)
            report.checked += result.checked
            if not result.ok:
                report.first_bad_index, report.reason, report.detail = (
                    result.first_bad_index, result.reason, result.detail,
                )  # fmt: skip
                break
            got = len(rows.indices)
            if got < stop - pos:
                report.first_bad_index, report.reason = pos + got, "index_gap"
                report.detail = f"event {pos + got} is missing (the log ends early)"
                break
            if want_leaves:
                leaf = core.leaf_hash
                leaves.extend([leaf(c) for c in rows.content_hashes])
            prev = result.last_chain_hash
            pos = stop
            if progress is not None:
                progress(pos - start, end - start)
        if latest is not None and report.first_bad_index is None and end == size:
            report.checkpoint_size = latest.size
            if latest.size > size:
                report.checkpoint_ok = False
                report.first_bad_index, report.reason = size, "truncated"
                report.detail = f"the log holds {size} events but a checkpoint was signed at {latest.size}"
            else:
                report.checkpoint_ok = core.merkle_root(leaves[: latest.size]) == latest.root
                if not report.checkpoint_ok:
                    report.reason = "checkpoint_mismatch"
                    report.detail = (
                        f"the first {latest.size} events do not hash to the root of the signed checkpoint "
                        "(history was rewritten and the chain recomputed)"
                    )
        report.seconds = time.perf_counter() - began
        return report

    # -- export ------------------------------------------------------------------------------

    async def export(self, start: int = 0, end: int | None = None) -> dict[str, Any]:
        """A self-contained segment of ``[start, end)``: the events' canonical payloads and
        hashes, a checkpoint of size ``n >= end`` (signed now if needed), the range proof (the
        Merkle peaks of the first ``start`` leaves and the consistency proof from ``end`` to
        ``n``: O(log n) hashes whatever the segment's length), the previous checkpoint with
        its consistency proof, and the verifier key. ``acgs audit verify-export`` checks it."""
        checkpoint = await self.checkpoint()
        if checkpoint is None:
            raise AuditArgumentError("the log is empty: nothing to export")
        end = checkpoint.size if end is None else end
        if not 0 <= start <= end <= checkpoint.size:
            raise AuditArgumentError(f"need 0 <= from <= to <= {checkpoint.size}, got from={start} to={end}")
        async with self._lock:
            leaves = await self._extend(checkpoint.size)
        rows = await self.store.read(max(0, start - 1), end)
        prev = GENESIS
        if start > 0:
            prev = rows[0].chain_hash
            rows = rows[1:]
        tree = leaves[: checkpoint.size]
        before = core.CompactRange()
        before.extend(tree[:start])
        events = [
            {
                "index": r.index,
                "payload": r.payload.decode("utf-8"),
                "content_hash": r.content_hash.hex(),
                "chain_hash": r.chain_hash.hex(),
            }
            for r in rows
        ]
        previous = None
        earlier = [c for c in await self.store.checkpoints() if c.size < checkpoint.size]
        if earlier:
            old = earlier[-1]
            previous = {
                "checkpoint": old.note,
                "consistency_proof": [h.hex() for h in core.consistency_proof(tree, old.size, checkpoint.size)],
            }
        return {
            "format": EXPORT_FORMAT,
            "origin": self.origin,
            "verifier_key": self.verifier_key,
            "start": start,
            "end": end,
            "prev_chain_hash": prev.hex(),
            "checkpoint": checkpoint.note,
            "range_proof": {
                "peaks_before": [h.hex() for h in before.peaks],
                "consistency_to_checkpoint": [h.hex() for h in core.consistency_proof(tree, end, checkpoint.size)]
                if end > 0
                else [],
            },
            "previous": previous,
            "events": events,
        }
