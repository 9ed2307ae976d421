"""Settings of the evolution service: one frozen object, read from ``ACGS_*`` environment
variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acgs import default_bundle_path
from acgs.security.secrets import resolve_url
from acgs.services.common.env import mask_password, non_negative_int, optional_text, positive_float, read_env

#: Environment variable for each setting. The data directory is shared by the services, so its
#: name carries no service prefix.
ENV_NAMES: dict[str, str] = {
    "bundle": "ACGS_EVOLUTION_BUNDLE",
    "entrypoint": "ACGS_EVOLUTION_ENTRYPOINT",
    "host": "ACGS_EVOLUTION_HOST",
    "port": "ACGS_EVOLUTION_PORT",
    "data_dir": "ACGS_DATA_DIR",
    "database_url": "ACGS_EVOLUTION_DATABASE_URL",
    "review_timeout": "ACGS_EVOLUTION_REVIEW_TIMEOUT",
    "validity": "ACGS_EVOLUTION_VALIDITY",
    "sweep_interval": "ACGS_EVOLUTION_SWEEP_INTERVAL",
    "relay_interval": "ACGS_EVOLUTION_RELAY_INTERVAL",
    "rollback_executor": "ACGS_EVOLUTION_ROLLBACK_EXECUTOR",
    "audit_url": "ACGS_EVOLUTION_AUDIT_URL",
    "webhook_urls": "ACGS_EVOLUTION_WEBHOOK_URLS",
    "webhook_secret": "ACGS_EVOLUTION_WEBHOOK_SECRET",
    "webhook_timeout": "ACGS_EVOLUTION_WEBHOOK_TIMEOUT",
    "log_level": "ACGS_LOG_LEVEL",
}


def _urls(text: str) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s):// URL")
    return urls


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bundle": Path,
    "entrypoint": str,
    "host": str,
    "port": non_negative_int,
    "data_dir": Path,
    "database_url": optional_text,
    "review_timeout": positive_float,
    "validity": positive_float,
    "sweep_interval": positive_float,
    "relay_interval": positive_float,
    "rollback_executor": optional_text,
    "audit_url": optional_text,
    "webhook_urls": _urls,
    "webhook_secret": optional_text,
    "webhook_timeout": positive_float,
    "log_level": str,
}


@dataclass(frozen=True, slots=True)
class EvolutionSettings:
    """Everything the evolution service can be told. Defaults suit one embedded node."""

    #: Constitution bundle whose ``acgs.evolution`` policy assesses every request.
    bundle: Path = field(default_factory=default_bundle_path)
    #: The assessing entrypoint; its result must have the shape of ``acgs/evolution/decision``.
    entrypoint: str = "acgs/evolution/decision"
    host: str = "127.0.0.1"
    port: int = 8002
    #: Where the SQLite database lives when no database URL is given.
    data_dir: Path = Path(".acgs-data")
    #: ``postgresql://user@host:port/db`` or ``sqlite:///path``; None: SQLite under data_dir. May
    #: be a secrets-store reference, or hold one as its password (``acgs.security.secrets``).
    database_url: str | None = None
    #: Seconds a pending request waits for its reviewers before it expires.
    review_timeout: float = 24 * 3600.0
    #: Seconds an assessment stays valid: an approved change not deployed by then expires.
    validity: float = 7 * 24 * 3600.0
    #: Seconds between sweeps that expire overdue requests (reads also expire them lazily).
    sweep_interval: float = 30.0
    #: Seconds between deliveries of the audit outbox to the audit sink, when one is attached.
    relay_interval: float = 1.0
    #: ``module:factory`` returning a ``RollbackExecutor``; None: the named-action executor.
    rollback_executor: str | None = None
    #: The audit service (``http://127.0.0.1:8003``) the outbox is relayed to; None keeps
    #: events in the outbox until a sink is attached.
    audit_url: str | None = None
    #: URLs notified of every state change (signed POSTs, retried until acknowledged).
    webhook_urls: tuple[str, ...] = ()
    #: HMAC-SHA256 key of the webhook signatures; required when webhook_urls is set. A
    #: ``file:``/``env:``/``vault:`` reference is read again as it rotates (see webhooks.py).
    webhook_secret: str | None = None
    #: Seconds one webhook delivery may take before it counts as failed.
    webhook_timeout: float = 10.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.webhook_urls and not self.webhook_secret:
            raise ValueError("webhook_urls needs webhook_secret (ACGS_EVOLUTION_WEBHOOK_SECRET) to sign the notifications")
        for url in self.webhook_urls:
            _urls(url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> EvolutionSettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``. A malformed variable raises
        ``ValueError`` naming it."""
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> EvolutionSettings:
        return dataclasses.replace(self, **changes)

    def resolved_database_url(self) -> str:
        """The database URL, with the SQLite default filled in under ``data_dir`` and a
        secrets-store reference (the whole URL, or ``{reference}`` as its password) resolved."""
        if self.database_url:
            return resolve_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'evolution.sqlite3'}"

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values, with any password in the database URL masked."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["bundle"] = str(self.bundle)
        out["data_dir"] = str(self.data_dir)
        out["webhook_urls"] = list(self.webhook_urls)
        out["webhook_secret"] = "***" if self.webhook_secret else None
        out["database_url"] = mask_password(self.database_url or f"sqlite:///{self.data_dir / 'evolution.sqlite3'}")
        return out
