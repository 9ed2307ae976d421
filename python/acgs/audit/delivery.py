"""Delivery of the services' audit events, shared by every producer (policy decision log,
sandbox, evolution): the event types only ACGS's own services may write, fitting an event to
the audit log's limits before it is queued, telling a refusal from a transient failure, and the
``delivery_rejected`` event that stands in the chain for an event the audit log refused.

An event the audit log refuses (``400``, ``413``, ``422``, or ``InvalidAuditEvent`` in
process) will be refused however often it is sent: retrying it would block every event behind
it for good. A producer therefore sets it aside (its dead letters) and delivers, in its place,
a ``delivery_rejected`` event carrying the SHA-256 of the refused event as it was sent, its
size, the reason and the producer, so the refusal itself is in the hash chain. Every other
failure (``5xx``, ``401``/``403``/``429``, connection errors) is transient: the producer keeps
the event and retries with backoff, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from acgs import _acgs as core
from acgs.audit.events import MAX_FIELD, MAX_PAYLOAD, OPTIONAL, REQUIRED
from acgs.errors import AuditError, CanonicalJsonError, InvalidAuditEvent

#: Event types written by ACGS's own services. With authentication on, only principals with the
#: ``service`` (or ``admin``) role may append them: an agent cannot forge a decision, an
#: execution, a change-request transition or a delivery refusal.
RESERVED_EVENT_TYPES = frozenset(
    {"policy_decision", "sandbox_execution", "evolution_transition", "delivery_rejected"}
)
DELIVERY_REJECTED = "delivery_rejected"
#: HTTP statuses that refuse the event itself; any other failure is retried.
REJECTED_STATUSES = frozenset({400, 413, 415, 422})
#: Canonical size an event is fitted to before it is queued: below the audit log's limit, with
#: room for the fields the service adds (id, timestamp, submitter).
FIT_PAYLOAD = MAX_PAYLOAD - 4096
#: A metadata value larger than this (canonical bytes) is replaced by its digest when the event
#: does not fit whole.
_BIG_VALUE = 1024
_MAX_REASON = 1000


class AuditDeliveryError(AuditError):
    """The audit service did not acknowledge an event (transient: retry it). ``delivered``
    counts the events of the batch acknowledged before the failure (a batch may travel in
    several bodies): they are durable and must not be sent again."""

    code = "audit_delivery_failed"
    delivered = 0


class DeliveryRejected(AuditDeliveryError):
    """The audit log refused the event itself (4xx): retrying cannot help."""

    code = "audit_delivery_rejected"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def delivered_before(exc: BaseException) -> int:
    """How many events of a failed batch were acknowledged before ``exc``."""
    count = getattr(exc, "delivered", 0)
    return count if isinstance(count, int) and count > 0 else 0


def is_rejection(exc: BaseException) -> bool:
    """True when ``exc`` says the event itself was refused (dead-letter it, do not retry)."""
    return isinstance(exc, (DeliveryRejected, InvalidAuditEvent))


def encode(event: Mapping[str, Any]) -> bytes:
    """The JSON bytes a producer sends for ``event``; ``DeliveryRejected`` when it has none."""
    try:
        return orjson.dumps(event)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise DeliveryRejected(f"the event has no JSON form: {exc}") from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_size(value: Any) -> int | None:
    try:
        return len(core.canonical_json(value))
    except CanonicalJsonError:
        return None
    except Exception:  # noqa: BLE001 - any value the core cannot take is unrepresentable
        return None


def _digest_of(value: Any) -> dict[str, Any]:
    try:
        data = core.canonical_json(value)
        return {"sha256": digest(data), "size": len(data)}
    except Exception:  # noqa: BLE001 - the repr stands in for a value JSON cannot hold
        data = repr(value).encode("utf-8", "replace")
        return {"sha256": digest(data), "size": len(data), "canonical": False}


def _text(value: Any, default: str) -> str:
    if not isinstance(value, str) or not value.strip():
        return default
    return value if len(value) <= MAX_FIELD else value[: MAX_FIELD - 1] + "\u2026"


def fit_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` made acceptable to the audit log before it is queued: required text fields
    present and at most ``MAX_FIELD`` characters, optional ones strings or absent, metadata an
    object with a canonical form, and the whole under ``FIT_PAYLOAD`` canonical bytes. What has
    to go is replaced by its SHA-256 and size (``metadata.truncated`` lists what), never
    dropped silently. An event that already fits comes back equal."""
    out: dict[str, Any] = {}
    truncated: list[str] = []
    for name in REQUIRED:
        value = event.get(name)
        out[name] = _text(value, "unknown")
        if out[name] != value:
            truncated.append(name)
    for name in OPTIONAL:
        value = event.get(name)
        if value is None:
            continue
        if isinstance(value, str) and len(value) <= MAX_FIELD:
            out[name] = value
            continue
        fitted = _text(value, "")
        if fitted:
            out[name] = fitted
        if fitted != value:
            truncated.append(name)
    metadata = event.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        metadata = {"value": _digest_of(repr(metadata))}
        truncated.append("metadata")
    metadata = dict(metadata)
    key = metadata.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_FIELD):
        metadata["idempotency_key"] = "sha256:" + digest(repr(key).encode("utf-8", "replace"))
        truncated.append("metadata.idempotency_key")
    out["metadata"] = metadata
    size = _canonical_size(out)
    if size is not None and size <= FIT_PAYLOAD and not truncated:
        return out
    if size is None or size > FIT_PAYLOAD:
        sizes = {k: _canonical_size(v) for k, v in metadata.items() if k != "idempotency_key"}
        # Values without a canonical form always go; then the largest, until the event fits.
        for name in [k for k, v in sizes.items() if v is None]:
            metadata[name] = _digest_of(metadata[name])
            truncated.append(f"metadata.{name}")
        size = _canonical_size(out)
        for name in sorted((k for k, v in sizes.items() if v is not None), key=lambda k: -(sizes[k] or 0)):
            if size is not None and size <= FIT_PAYLOAD or (sizes[name] or 0) <= _BIG_VALUE:
                break
            metadata[name] = _digest_of(metadata[name])
            truncated.append(f"metadata.{name}")
            size = _canonical_size(out)
        if size is None or size > FIT_PAYLOAD:
            kept = {"idempotency_key": metadata["idempotency_key"]} if "idempotency_key" in metadata else {}
            out["metadata"] = {**kept, "digest": _digest_of(event.get("metadata"))}
            truncated.append("metadata")
    out["metadata"]["truncated"] = sorted(set(truncated))
    return out


def rejection_event(
    event: Mapping[str, Any] | Any, reason: str, producer: str, *, sent: bytes | None = None
) -> dict[str, Any]:
    """The ``delivery_rejected`` event that takes the place of ``event`` in the log: the
    SHA-256 and size of the bytes sent (``sent``, else the event's JSON), the reason, the
    producer, and the refused event's type, agent and decision id where they are usable."""
    if sent is None:
        try:
            sent = encode(event)
        except DeliveryRejected:
            sent = repr(event).encode("utf-8", "replace")
    original = event if isinstance(event, Mapping) else {}
    metadata: dict[str, Any] = {
        "producer": producer,
        "rejected_sha256": digest(sent),
        "rejected_size": len(sent),
        "reason": reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 1] + "\u2026",
        "rejected_event_type": _text(original.get("event_type"), "unknown"),
        # A producer that re-sends the same refusal after a crash stores it once.
        "idempotency_key": f"{DELIVERY_REJECTED}:{producer}:{digest(sent)}",
    }
    out: dict[str, Any] = {
        "event_type": DELIVERY_REJECTED,
        "agent_id": _text(original.get("agent_id"), "unknown"),
        "action": "audit.deliver",
        "result": "rejected",
        "metadata": metadata,
    }
    decision_id = _text(original.get("decision_id"), "")
    if decision_id:
        out["decision_id"] = decision_id
    return out
