"""Settings of the audit service: one frozen object, read from ``ACGS_*`` environment variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acgs.security.secrets import resolve_url
from acgs.services.common.env import mask_password, non_negative_float, non_negative_int, optional_text, positive_int, read_env

#: Environment variable for each setting. The data directory is shared by the services, so its
#: name carries no service prefix.
ENV_NAMES: dict[str, str] = {
    "host": "ACGS_AUDIT_HOST",
    "port": "ACGS_AUDIT_PORT",
    "data_dir": "ACGS_DATA_DIR",
    "database_url": "ACGS_AUDIT_DATABASE_URL",
    "origin": "ACGS_AUDIT_ORIGIN",
    "checkpoint_interval": "ACGS_AUDIT_CHECKPOINT_INTERVAL",
    "max_batch": "ACGS_AUDIT_MAX_BATCH",
    "max_page": "ACGS_AUDIT_MAX_PAGE",
    "max_body": "ACGS_AUDIT_MAX_BODY",
    "segment_size": "ACGS_AUDIT_SEGMENT_SIZE",
    "archive": "ACGS_AUDIT_ARCHIVE",
    "archive_endpoint": "ACGS_AUDIT_ARCHIVE_ENDPOINT",
    "archive_interval": "ACGS_AUDIT_ARCHIVE_INTERVAL",
    "kafka_bootstrap": "ACGS_AUDIT_KAFKA_BOOTSTRAP",
    "kafka_topic": "ACGS_AUDIT_KAFKA_TOPIC",
    "log_level": "ACGS_LOG_LEVEL",
}


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": str,
    "port": non_negative_int,
    "data_dir": Path,
    "database_url": optional_text,
    "origin": optional_text,
    "checkpoint_interval": non_negative_float,
    "max_batch": positive_int,
    "max_page": positive_int,
    "max_body": positive_int,
    "segment_size": non_negative_int,
    "archive": optional_text,
    "archive_endpoint": optional_text,
    "archive_interval": non_negative_float,
    "kafka_bootstrap": optional_text,
    "kafka_topic": str,
    "log_level": str,
}


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Everything the audit service can be told. Defaults suit one embedded node. The signing
    key comes from ``ACGS_AUDIT_SIGNING_KEY`` (the key, or a ``file:``/``env:``/``vault:``
    reference to it) or ``<data_dir>/audit-signing.key`` (see ``acgs.audit.keys``) and is never a
    setting that ``public`` would show."""

    host: str = "127.0.0.1"
    port: int = 8003
    #: Where the SQLite log and the signing key live.
    data_dir: Path = Path(".acgs-data")
    #: ``postgresql://user@host:port/db`` or ``sqlite:///path``; None: SQLite under data_dir. May
    #: be a secrets-store reference, or hold one as its password (``acgs.security.secrets``).
    database_url: str | None = None
    #: The log's origin line in checkpoints; None: the signing key's name.
    origin: str | None = None
    #: Seconds between background checkpoints of a grown log; 0 signs only on request.
    checkpoint_interval: float = 10.0
    #: Most events one ``POST /audit/events`` may carry.
    max_batch: int = 1000
    #: Most events one page of ``GET /audit/events`` returns.
    max_page: int = 1000
    #: Largest request body, in bytes; a larger one is answered 413.
    max_body: int = 1024 * 1024
    #: Events per sealed, archived segment; 0 turns archiving off.
    segment_size: int = 100_000
    #: Where sealed segments go: a directory, or ``s3://bucket/prefix``; None: ``<data_dir>/archive``.
    archive: str | None = None
    #: S3-compatible endpoint URL for an ``s3://`` archive (None: AWS).
    archive_endpoint: str | None = None
    #: Seconds between checks for complete segments to seal.
    archive_interval: float = 60.0
    #: ``host:port[,host:port]`` of Kafka/Redpanda brokers to stream every event to; None: off.
    kafka_bootstrap: str | None = None
    kafka_topic: str = "constitutional-events"
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AuditSettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``. A malformed variable raises
        ``ValueError`` naming it."""
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> AuditSettings:
        return dataclasses.replace(self, **changes)

    def resolved_database_url(self) -> str:
        """The database URL, with the SQLite default filled in under ``data_dir`` and a
        secrets-store reference (the whole URL, or ``{reference}`` as its password) resolved."""
        if self.database_url:
            return resolve_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'audit.sqlite3'}"

    def resolved_archive(self) -> str:
        return self.archive or str(self.data_dir / "archive")

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values, with any password in the database URL masked."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["data_dir"] = str(self.data_dir)
        out["database_url"] = mask_password(self.database_url or f"sqlite:///{self.data_dir / 'audit.sqlite3'}")
        return out
