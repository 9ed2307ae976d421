"""The ACGS audit log: durable stores of one hash chain (SQLite embedded, PostgreSQL for several
nodes), the transparency log over them (checkpoints, proofs, verification, export), offline
verification of exports, and sinks through which the other services record events."""

from acgs.audit.events import Appended, EventFilter, PreparedEvent, StoredCheckpoint, StoredEvent, prepare
from acgs.audit.export import EXPORT_FORMAT, ExportReport, verify_export
from acgs.audit.log import AuditLog, VerifyReport
from acgs.audit.store import AuditStore, open_store

__all__ = [
    "EXPORT_FORMAT",
    "Appended",
    "AuditLog",
    "AuditStore",
    "EventFilter",
    "ExportReport",
    "PreparedEvent",
    "StoredCheckpoint",
    "StoredEvent",
    "VerifyReport",
    "open_store",
    "prepare",
    "verify_export",
]
