"""Audit events: what a caller sends, how it is checked and enriched (id, timestamp) into the
canonical payload the chain hashes, and how stored events are handed back.

The payload is the RFC 8785 canonical JSON of the whole enriched event (``event_id``,
``timestamp`` and every field the caller sent), made by the Rust core: every field that matters
is hashed, nothing rides outside the hash. An event's log index is not in its payload; the
chain hash binds each payload to its place.

``submitted_by`` in the payload is who appended the event: set by the log's owner (the audit
service from the authenticated principal, or the client's address with authentication off),
never by the caller; whatever a caller sends under that key is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from acgs import _acgs as core
from acgs.errors import CanonicalJsonError, InvalidAuditEvent
from acgs.services.common.ids import DecisionIds

GENESIS = b"\x00" * 32

#: Fields a caller must send, each a non-empty string.
REQUIRED = ("event_type", "agent_id", "action", "result")
#: Optional string fields.
OPTIONAL = ("decision_id", "constitutional_hash")
#: Longest accepted value of a string field, in characters.
MAX_FIELD = 512
#: Largest accepted canonical payload, in bytes.
MAX_PAYLOAD = 256 * 1024
#: The payload key naming who submitted the event (set by the log's owner, never the caller).
SUBMITTED_BY = "submitted_by"


_second: list[Any] = [None, ""]


def format_timestamp(ts_us: int) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-25T22:59:09.123456Z``."""
    seconds, micros = divmod(ts_us, 1_000_000)
    cached = _second
    if cached[0] != seconds:
        # Formatting the date costs more than everything else in an append; it changes once a second.
        cached[1] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0] = seconds
    return f"{cached[1]}.{micros:06d}Z"


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch from RFC 3339 text or a number of seconds."""
    try:
        return int(round(float(text) * 1_000_000))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 3339 time or a number of seconds: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(round(parsed.timestamp() * 1_000_000))


_ids = DecisionIds()


def new_event_id() -> str:
    """``evt_`` and a UUID: per process, random bits drawn once and a counter (``uuid4`` per
    event costs more than the rest of the event's preparation)."""
    return f"evt_{_ids.next()}"


@dataclass(slots=True)
class PreparedEvent:
    """An event ready to append: enriched, canonical, not yet placed in the chain."""

    event_id: str
    ts_us: int
    event_type: str
    agent_id: str
    decision_id: str | None
    #: ``metadata.idempotency_key`` when the caller sent one: a second event with the same key
    #: is not appended again; the first one is acknowledged instead.
    idempotency_key: str | None
    payload: bytes

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.ts_us)


_ALLOWED = frozenset((*REQUIRED, *OPTIONAL, "metadata", SUBMITTED_BY))


def _bad_text(name: str, value: Any, required: bool) -> InvalidAuditEvent:
    if value is None:
        return InvalidAuditEvent(f"{name} is required")
    if not isinstance(value, str):
        return InvalidAuditEvent(f"{name} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        return InvalidAuditEvent(f"{name} must not be empty")
    return InvalidAuditEvent(f"{name} is longer than {MAX_FIELD} characters")


def prepare(
    event: Mapping[str, Any], *, ts_us: int, event_id: str | None = None, submitter: Mapping[str, Any] | None = None
) -> PreparedEvent:
    """Checks a caller's event and makes its canonical payload. Raises ``InvalidAuditEvent``
    saying which field is wrong. ``submitter`` (who appends it) goes into the payload under
    ``submitted_by``; the caller's own ``submitted_by`` is dropped."""
    if type(event) is not dict and not isinstance(event, Mapping):
        raise InvalidAuditEvent(f"an event is a JSON object, not {type(event).__name__}")
    if not _ALLOWED.issuperset(event):
        unknown = sorted(str(k) for k in event if k not in _ALLOWED)
        raise InvalidAuditEvent(f"unknown field(s): {', '.join(unknown)}")
    fields: dict[str, Any] = {}
    for name in REQUIRED:
        value = event.get(name)
        # The common case in one test; the reason is worked out only for a bad value.
        if type(value) is not str or not 0 < len(value) <= MAX_FIELD or value.isspace():
            raise _bad_text(name, value, True)
        fields[name] = value
    for name in OPTIONAL:
        value = event.get(name)
        if value is not None:
            if type(value) is not str or len(value) > MAX_FIELD:
                raise _bad_text(name, value, False)
            fields[name] = value
    metadata = event.get("metadata")
    if metadata is None:
        metadata = {}
    elif type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise InvalidAuditEvent(f"metadata must be an object, not {type(metadata).__name__}")
    key = metadata.get("idempotency_key")
    if key is not None and (type(key) is not str or not key or len(key) > MAX_FIELD):
        raise InvalidAuditEvent(f"metadata.idempotency_key must be a non-empty string of at most {MAX_FIELD} characters")
    fields["metadata"] = metadata
    if submitter is not None:
        fields[SUBMITTED_BY] = submitter
    eid = fields["event_id"] = event_id or new_event_id()
    fields["timestamp"] = format_timestamp(ts_us)
    try:
        payload = core.canonical_json(fields)
    except CanonicalJsonError as exc:
        raise InvalidAuditEvent(f"metadata has no canonical JSON form ({exc.code}): {exc}") from None
    if len(payload) > MAX_PAYLOAD:
        raise InvalidAuditEvent(f"event is {len(payload)} bytes as canonical JSON; the limit is {MAX_PAYLOAD}")
    return PreparedEvent(eid, ts_us, fields["event_type"], fields["agent_id"], fields.get("decision_id"), key, payload)


@dataclass(slots=True)
class Appended:
    """The acknowledgement of one durable append."""

    index: int
    event_id: str
    ts_us: int
    content_hash: bytes
    chain_hash: bytes
    #: True when an event with the same idempotency key was already in the log (this is it).
    duplicate: bool = False

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.ts_us)

    def receipt(self) -> dict[str, Any]:
        """The seed's response body, plus the index and chain hash."""
        return {
            "event_id": self.event_id,
            "hash": f"sha256:{self.content_hash.hex()}",
            "chain_hash": f"sha256:{self.chain_hash.hex()}",
            "timestamp": self.timestamp,
            "ingested": True,
            "index": self.index,
            "duplicate": self.duplicate,
        }


@dataclass(slots=True)
class StoredEvent:
    """One stored row. ``content_hash`` and ``chain_hash`` are what the store holds: only a
    verification says whether they match ``payload``."""

    index: int
    event_id: str
    ts_us: int
    payload: bytes
    content_hash: bytes
    chain_hash: bytes

    def event(self) -> dict[str, Any]:
        """The event as stored in its payload (the payload, not the index columns, is the record)."""
        value = orjson.loads(self.payload)
        if not isinstance(value, dict):
            raise InvalidAuditEvent(f"stored payload at index {self.index} is not an object")
        return value

    def view(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event": self.event(),
            "hash": f"sha256:{self.content_hash.hex()}",
            "chain_hash": f"sha256:{self.chain_hash.hex()}",
        }


@dataclass(frozen=True, slots=True)
class Columns:
    """Stored rows of a range as columns, for verification: no object per event."""

    indices: list[int]
    payloads: list[bytes]
    content_hashes: list[bytes]
    chain_hashes: list[bytes]
    #: When asked for: the columns copied out of each payload for queries, as stored
    #: (event_id, ts_us, event_type, agent_id, decision_id, idempotency_key).
    derived: list[tuple[Any, ...]] | None = None


#: The columns a store copies out of the payload, in ``Columns.derived`` order.
DERIVED = ("event_id", "ts_us", "event_type", "agent_id", "decision_id", "idempotency_key")


def derived_mismatch(payload: bytes, stored: tuple[Any, ...]) -> str | None:
    """Which derived column of a row disagrees with its payload (None when all agree)."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "payload"
    if type(value) is not dict:
        return "payload"
    metadata = value.get("metadata")
    key = metadata.get("idempotency_key") if type(metadata) is dict else None
    want = (
        value.get("event_id"),
        value.get("timestamp"),
        value.get("event_type"),
        value.get("agent_id"),
        value.get("decision_id"),
        key,
    )
    event_id, ts_us, event_type, agent_id, decision_id, idem = stored
    got = (event_id, format_timestamp(ts_us) if type(ts_us) is int else ts_us, event_type, agent_id, decision_id, idem)
    for name, w, g in zip(DERIVED, want, got, strict=True):
        if w != g or type(w) is not type(g):
            return name
    return None


@dataclass(frozen=True, slots=True)
class EventFilter:
    agent_id: str | None = None
    event_type: str | None = None
    decision_id: str | None = None
    since_us: int | None = None
    until_us: int | None = None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    created_us: int
