"""``AuditLog``: the transparency log over a store. It appends events, signs checkpoints of the
Merkle tree over them, proves inclusion and consistency, verifies stored ranges and exports
self-contained segments. Every hash, proof and signature is made by the Rust core.

The log signs only what it has verified: before a checkpoint covers new events, their stored
payloads are re-hashed and the chain checked (``verify_chain``), and the Merkle leaves come from
those verified hashes. A log whose rows were altered refuses to sign (``AuditIntegrityError``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from acgs import _acgs as core
from acgs.audit.events import (
    GENESIS,
    Appended,
    Columns,
    PreparedEvent,
    StoredCheckpoint,
    derived_mismatch,
    format_timestamp,
    prepare,
)
from acgs.audit.export import EXPORT_FORMAT
from acgs.audit.keys import key_name
from acgs.audit.store import AuditStore
from acgs.errors import AuditArgumentError, AuditError, AuditIntegrityError

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
    #: Signed checkpoints checked against the pinned key and the re-hashed events.
    checkpoints_checked: int = 0
    #: What is wrong with the checkpoints (signature, deleted, forged), if anything.
    checkpoint_error: str | None = None
    #: The size of the witnessed checkpoint (kept outside the database), if one was checked.
    witness_size: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None and self.checkpoint_ok is not False and self.checkpoint_error is None

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
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoint_error": self.checkpoint_error,
            "witness_size": self.witness_size,
            "seconds": round(self.seconds, 6),
        }


@dataclass(slots=True)
class _Verified:
    """Leaf hashes of the verified prefix of the log, and the chain hash after it."""

    leaves: list[bytes] = field(default_factory=list)
    chain: bytes = GENESIS


def _rows_report(prev: bytes, rows: Columns, first: int) -> Any:
    return core.verify_chain(prev, rows.payloads, rows.content_hashes, rows.chain_hashes, first, rows.indices)


def _note_size(note: str) -> int:
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else -1


def write_witness(path: Path, note: str, size: int) -> None:
    """Keeps ``note`` (a signed checkpoint of ``size`` events) in ``path`` unless the file
    already holds a larger one: written whole, synced, then renamed into place."""
    try:
        if _note_size(path.read_text()) >= size:
            return
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(note)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_note(note: str, key: str) -> tuple[int, bytes]:
    """The size and root of a checkpoint note signed by ``key``; ``AuditError`` otherwise."""
    _origin, size, root = core.verify_checkpoint(note, key)
    return int(size), bytes(root)


class _Checkpoints:
    """Holds the re-hashed leaves, as they stream past, to the signed checkpoints: each stored
    checkpoint (and the witnessed one) must carry a valid signature by the pinned key, match
    its row, and have the root of the leaves before its size."""

    def __init__(self, stored: list[StoredCheckpoint], key: str, witness: tuple[int, bytes] | None) -> None:
        self.targets: list[tuple[int, bytes, str]] = []
        self.error: str | None = None
        self.checked = 0
        for cp in stored:
            try:
                size, root = _check_note(cp.note, key)
            except AuditError as exc:
                self.error = f"checkpoint of size {cp.size}: signature does not verify with the pinned key ({exc.code}): {exc}"
                return
            if size != cp.size or root != cp.root:
                self.error = f"checkpoint of size {cp.size}: its row does not match its signed note (size {size})"
                return
            self.targets.append((size, root, f"signed checkpoint of size {size}"))
        if witness is not None:
            self.targets.append((witness[0], witness[1], f"witnessed checkpoint of size {witness[0]}"))
        self.targets.sort(key=lambda t: t[0])
        self.tree = core.CompactRange()
        self.done = 0
        self._next = 0

    def feed(self, leaves: list[bytes], first: int) -> str | None:
        """Extends the tree by the leaves of ``[first, first + len(leaves))``; the first
        checkpoint they contradict, if any."""
        end = first + len(leaves)
        while self._next < len(self.targets) and self.targets[self._next][0] <= end:
            size, root, what = self.targets[self._next]
            if size > self.done:
                self.tree.extend(leaves[self.done - first : size - first])
                self.done = size
            self.checked += 1
            self._next += 1
            if self.tree.root() != root:
                return f"the first {size} events do not hash to the root of the {what} (history was rewritten)"
        if end > self.done:
            self.tree.extend(leaves[self.done - first :])
            self.done = end
        return None


async def verify_log(
    store: AuditStore,
    start: int = 0,
    end: int | None = None,
    *,
    verifier_key: str | None,
    witness: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Re-hashes every stored payload of ``[start, end)`` (default: the whole log), checks the
    chain and every column copied out of the payloads for queries. When the range starts at 0
    it also holds the log to its signed checkpoints: each must verify with ``verifier_key``
    (pinned outside the database; None skips signatures and trusts the stored roots) and its
    root must be that of the re-hashed events; the checkpoint in ``witness`` (a file outside
    the database) must be in the store, so deleted checkpoints, a truncated log and a history
    rewritten with its chain recomputed are all caught. A range starting later is anchored at
    the stored chain hash before it."""
    began = time.perf_counter()
    size = await store.size()
    end = size if end is None else end
    if not 0 <= start <= end:
        raise AuditArgumentError(f"need 0 <= from <= to, got from={start} to={end}")
    report = VerifyReport(start=start, end=end)
    whole = start == 0 and end == size
    checks: _Checkpoints | None = None
    latest: StoredCheckpoint | None = None
    if whole:
        stored = await store.checkpoints()
        latest = stored[-1] if stored else None
        witnessed: tuple[int, bytes] | None = None
        if witness is not None and verifier_key is not None and witness.exists():
            try:
                witnessed = _check_note(witness.read_text(), verifier_key)
            except (AuditError, OSError, ValueError) as exc:
                report.checkpoint_error = f"the witnessed checkpoint in {witness.name} does not verify: {exc}"
                report.seconds = time.perf_counter() - began
                return report
            report.witness_size = witnessed[0]
            if not any(cp.size == witnessed[0] and cp.root == witnessed[1] for cp in stored):
                report.checkpoint_error = (
                    f"the checkpoint of size {witnessed[0]} witnessed outside the database is missing from it "
                    "(checkpoints were deleted)"
                )
            if witnessed[0] > size:
                report.first_bad_index, report.reason = size, "truncated"
                report.detail = f"the log holds {size} events but a checkpoint was signed at {witnessed[0]}"
        if verifier_key is not None:
            checks = _Checkpoints(stored, verifier_key, witnessed)
            if checks.error is not None:
                report.checkpoint_error = checks.error
                checks = None
        if latest is not None and latest.size > size and report.first_bad_index is None:
            report.first_bad_index, report.reason = size, "truncated"
            report.detail = f"the log holds {size} events but a checkpoint was signed at {latest.size}"
        if report.checkpoint_error is not None or report.first_bad_index is not None:
            report.checkpoint_ok = False if report.first_bad_index is not None else None
            report.seconds = time.perf_counter() - began
            return report
    prev = GENESIS
    if start > 0:
        before = await store.read(start - 1, start)
        if not before:
            report.first_bad_index, report.reason = start - 1, "index_gap"
            report.detail = f"event {start - 1}, the anchor of the range, is missing"
            return report
        prev = before[0].chain_hash
    leaves: list[bytes] = []
    legacy = whole and latest is not None and checks is None
    pos = start
    while pos < end:
        stop = min(end, pos + CHUNK)
        rows = await store.read_columns(pos, stop, derived=True)
        result = _rows_report(prev, rows, pos)
        if not result.ok:
            report.checked += result.checked
            report.first_bad_index, report.reason, report.detail = (
                result.first_bad_index, result.reason, result.detail,
            )  # fmt: skip
            break
        got = len(rows.indices)
        bad = _derived_report(rows)
        if bad is not None:
            report.checked += bad[0] - pos
            report.first_bad_index, report.reason = bad[0], "derived_column_mismatch"
            report.detail = f"event {bad[0]}: the stored {bad[1]} column does not match the event's payload"
            break
        report.checked += result.checked
        if got < stop - pos:
            report.first_bad_index, report.reason = pos + got, "index_gap"
            report.detail = f"event {pos + got} is missing (the log ends early)"
            break
        if checks is not None or legacy:
            leaf = core.leaf_hash
            chunk_leaves = [leaf(c) for c in rows.content_hashes]
            if legacy:
                leaves.extend(chunk_leaves)
            if checks is not None:
                problem = checks.feed(chunk_leaves, pos)
                if problem is not None:
                    report.checkpoint_ok = False
                    report.reason, report.detail = "checkpoint_mismatch", problem
                    break
        prev = result.last_chain_hash
        pos = stop
        if progress is not None:
            progress(pos - start, end - start)
    if whole and latest is not None and report.first_bad_index is None and report.reason is None:
        report.checkpoint_size = latest.size
        if checks is not None:
            report.checkpoints_checked = checks.checked
            report.checkpoint_ok = True
        else:
            report.checkpoint_ok = core.merkle_root(leaves[: latest.size]) == latest.root
            if not report.checkpoint_ok:
                report.reason = "checkpoint_mismatch"
                report.detail = (
                    f"the first {latest.size} events do not hash to the root of the signed checkpoint "
                    "(history was rewritten and the chain recomputed)"
                )
    elif report.reason == "checkpoint_mismatch" and latest is not None:
        report.checkpoint_size = latest.size
    report.seconds = time.perf_counter() - began
    return report


def _derived_report(rows: Columns) -> tuple[int, str] | None:
    """The first row whose derived columns disagree with its payload, and which column."""
    if rows.derived is None:
        return None
    loads = orjson.loads
    stamp = format_timestamp
    for index, payload, stored in zip(rows.indices, rows.payloads, rows.derived, strict=True):
        # The common case in one comparison; ``derived_mismatch`` names the column otherwise.
        try:
            value = loads(payload)
            metadata = value["metadata"]
            same = (
                value["event_id"] == stored[0]
                and value["timestamp"] == stamp(stored[1])
                and value["event_type"] == stored[2]
                and value["agent_id"] == stored[3]
                and value.get("decision_id") == stored[4]
                and metadata.get("idempotency_key") == stored[5]
            )
        except Exception:  # noqa: BLE001 - any malformed row is examined below
            same = False
        if not same:
            column = derived_mismatch(bytes(payload), stored)
            if column is not None:
                return index, column
    return None


class AuditLog:
    """One log: a store, its origin and its signing key. ``open`` before use."""

    def __init__(
        self,
        store: AuditStore,
        private_key: str,
        *,
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
        witness: Path | None = None,
    ) -> None:
        self.store = store
        #: A file outside the database holding the latest checkpoint this log signed.
        self.witness = witness
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

    def prepare(
        self, events: Sequence[Mapping[str, Any]], *, submitter: Mapping[str, Any] | None = None
    ) -> list[PreparedEvent]:
        """Checks and canonicalises events (``InvalidAuditEvent`` on the first bad one);
        ``submitter`` is recorded in each payload as who submitted it."""
        ts_us = int(self.clock() * 1_000_000)
        return [prepare(e, ts_us=ts_us, submitter=submitter) for e in events]

    async def append(
        self, events: Sequence[Mapping[str, Any]], *, submitter: Mapping[str, Any] | None = None
    ) -> list[Appended]:
        """Appends events durably, in order; returns their receipts once committed."""
        return await self.append_prepared(self.prepare(events, submitter=submitter))

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
            if self.witness is not None:
                await asyncio.to_thread(write_witness, self.witness, note, size)
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
        self,
        start: int = 0,
        end: int | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        verifier_key: str | None = None,
        witness: Path | None | bool = True,
    ) -> VerifyReport:
        """``verify_log`` of this log's store, held to ``verifier_key`` (default: the key of
        this log's signer, which lives outside the database) and to the witness file."""
        return await verify_log(
            self.store,
            start,
            end,
            verifier_key=verifier_key or self.verifier_key,
            witness=self.witness if witness is True else (witness or None),
            progress=progress,
        )

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
