"""Offline verification of an exported log segment: no database, no service, only the file,
the log's verifier key and the Rust core's hashing, proofs and signature check.

A segment (JSON, ``format: acgs-audit-export/1``, optionally gzipped) holds events
``[start, end)`` as canonical payloads with their content and chain hashes, the chain hash
before ``start``, a signed checkpoint of size ``n >= end``, a range proof, optionally an
earlier checkpoint with the consistency proof to this one, and the log's verifier key.

The range proof places the segment in the signed tree with O(log n) hashes: the Merkle peaks
of the first ``start`` leaves (a compact range) extended by the segment's leaves give the root
of the first ``end`` leaves, and the consistency proof from ``end`` to ``n`` ties that root to
the checkpoint's (when ``end == n`` the roots must simply be equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acgs import _acgs as core
from acgs.errors import AuditError

EXPORT_FORMAT = "acgs-audit-export/1"


@dataclass(slots=True)
class ExportReport:
    ok: bool = False
    origin: str | None = None
    checkpoint_size: int | None = None
    events: int = 0
    start: int | None = None
    end: int | None = None
    first_bad_index: int | None = None
    problems: list[str] = field(default_factory=list)
    #: True when the key came from the file itself rather than from the caller.
    key_from_file: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origin": self.origin,
            "checkpoint_size": self.checkpoint_size,
            "events": self.events,
            "start": self.start,
            "end": self.end,
            "first_bad_index": self.first_bad_index,
            "problems": self.problems,
            "key_from_file": self.key_from_file,
        }


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a hex string")
    out = bytes.fromhex(value)
    if len(out) != 32:
        raise ValueError(f"{what} is not 32 bytes")
    return out


def verify_export(doc: Any, verifier_key: str | None = None) -> ExportReport:
    """Checks a segment; ``verifier_key`` pins the log's key (without it, the key in the file
    is used, which proves integrity but not who signed)."""
    report = ExportReport()
    try:
        _verify(doc, verifier_key, report)
    except (ValueError, TypeError, KeyError, AuditError) as exc:
        report.problems.append(f"malformed export: {type(exc).__name__}: {exc}")
    report.ok = not report.problems
    return report


def _verify(doc: Any, verifier_key: str | None, report: ExportReport) -> None:
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"not an {EXPORT_FORMAT} document")
    key = verifier_key
    if key is None:
        key = doc["verifier_key"]
        report.key_from_file = True
    try:
        origin, size, root = core.verify_checkpoint(doc["checkpoint"], key)
    except AuditError as exc:
        report.problems.append(f"checkpoint signature: {exc.code}: {exc}")
        return
    report.origin, report.checkpoint_size = origin, size
    start, end = int(doc["start"]), int(doc["end"])
    report.start, report.end = start, end
    if not 0 <= start <= end <= size:
        report.problems.append(f"range [{start}, {end}) is not inside the checkpoint's tree of {size}")
        return
    events = doc["events"]
    if not isinstance(events, list) or len(events) != end - start:
        report.problems.append(f"expected {end - start} events, found {len(events) if isinstance(events, list) else 0}")
        return
    report.events = len(events)
    payloads = [e["payload"].encode("utf-8") for e in events]
    contents = [_hex(e["content_hash"], f"content_hash of event {e.get('index')}") for e in events]
    chains = [_hex(e["chain_hash"], f"chain_hash of event {e.get('index')}") for e in events]
    indices = [int(e["index"]) for e in events]
    chain = core.verify_chain(_hex(doc["prev_chain_hash"], "prev_chain_hash"), payloads, contents, chains, start, indices)
    if not chain.ok:
        report.first_bad_index = chain.first_bad_index
        report.problems.append(f"event {chain.first_bad_index}: {chain.reason}: {chain.detail}")
        return
    # The chain verified, so every stored content hash equals the re-computed one.
    proof = doc["range_proof"]
    tree = core.CompactRange(start, [_hex(h, "a peak") for h in proof["peaks_before"]])
    tree.extend([core.leaf_hash(c) for c in contents])
    root_end = tree.root()
    to_checkpoint = [_hex(h, "a consistency hash") for h in proof["consistency_to_checkpoint"]]
    if end == size:
        placed = root_end == root and not to_checkpoint
    else:
        placed = core.verify_consistency(end, size, root_end, root, to_checkpoint)
    if not placed:
        report.problems.append("the events do not hash into the checkpoint's Merkle root at their indices")
        return
    previous = doc.get("previous")
    if previous:
        try:
            _o, old_size, old_root = core.verify_checkpoint(previous["checkpoint"], key)
        except AuditError as exc:
            report.problems.append(f"previous checkpoint signature: {exc.code}: {exc}")
            return
        proof = [bytes.fromhex(h) for h in previous["consistency_proof"]]
        if not core.verify_consistency(old_size, size, old_root, root, proof):
            report.problems.append(f"the checkpoint of size {size} is not consistent with the earlier one of size {old_size}")
