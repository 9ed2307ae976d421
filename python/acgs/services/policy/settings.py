"""Settings of the policy service: one frozen object, read from ``ACGS_*`` environment variables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from acgs import default_bundle_path
from acgs.security.secrets import resolve_optional_url
from acgs.services.common.env import flag, non_negative_float, non_negative_int, optional_non_negative_int, optional_text, read_env

T = TypeVar("T")

#: Environment variable for each setting. Redis is shared by the services, so its names carry
#: no service prefix.
ENV_NAMES: dict[str, str] = {
    "bundle": "ACGS_POLICY_BUNDLE",
    "host": "ACGS_POLICY_HOST",
    "port": "ACGS_POLICY_PORT",
    "workers": "ACGS_POLICY_WORKERS",
    "cache_size": "ACGS_POLICY_CACHE_SIZE",
    "cache_ttl": "ACGS_POLICY_CACHE_TTL",
    "native": "ACGS_POLICY_NATIVE",
    "evaluator": "ACGS_EVALUATOR",
    "redis_url": "ACGS_REDIS_URL",
    "redis_timeout_ms": "ACGS_REDIS_TIMEOUT_MS",
    "redis_retry_after": "ACGS_REDIS_RETRY_AFTER",
    "l2_ttl": "ACGS_POLICY_L2_TTL",
    "max_body_bytes": "ACGS_POLICY_MAX_BODY_BYTES",
    "max_batch": "ACGS_POLICY_MAX_BATCH",
    "timeout_ms": "ACGS_POLICY_TIMEOUT_MS",
    "memory_limit": "ACGS_POLICY_MEMORY_LIMIT",
    "default_decision": "ACGS_POLICY_DEFAULT_DECISION",
    "log_level": "ACGS_LOG_LEVEL",
    "data_dir": "ACGS_DATA_DIR",
    "decision_log": "ACGS_POLICY_DECISION_LOG",
    "decision_log_input": "ACGS_POLICY_DECISION_LOG_INPUT",
    "decision_log_queue": "ACGS_POLICY_DECISION_LOG_QUEUE",
    "decision_log_mode": "ACGS_POLICY_DECISION_LOG_MODE",
    "decision_log_outbox": "ACGS_POLICY_DECISION_LOG_OUTBOX",
}


def _evaluator(text: str) -> str:
    name = text.strip().lower()
    if name not in ("wasm", "plan", "auto"):
        raise ValueError("must be wasm, plan or auto")
    return name


def _decision_log_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("async", "sync"):
        raise ValueError("must be async or sync")
    return mode


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bundle": Path,
    "host": str,
    "port": non_negative_int,
    "workers": non_negative_int,
    "cache_size": non_negative_int,
    "cache_ttl": non_negative_float,
    "native": flag,
    "evaluator": _evaluator,
    "redis_url": resolve_optional_url,  # a reference, or {reference} as the password, is read at start
    "redis_timeout_ms": non_negative_float,
    "redis_retry_after": non_negative_float,
    "l2_ttl": non_negative_float,
    "max_body_bytes": non_negative_int,
    "max_batch": non_negative_int,
    "timeout_ms": optional_non_negative_int,
    "memory_limit": optional_non_negative_int,
    "default_decision": str,
    "log_level": str,
    "data_dir": Path,
    "decision_log": optional_text,
    "decision_log_input": str,
    "decision_log_queue": non_negative_int,
    "decision_log_mode": _decision_log_mode,
    "decision_log_outbox": lambda text: Path(text) if text.strip() else None,
}


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Everything the policy service can be told. Defaults suit one embedded node."""

    #: OPA Wasm bundle to serve (``.tar.gz``, directory or ``.wasm``).
    bundle: Path = field(default_factory=default_bundle_path)
    host: str = "127.0.0.1"
    port: int = 8004
    #: uvicorn worker processes (each loads the bundle and keeps its own L1 cache and metrics).
    workers: int = 1
    #: Entries in the engine's L1 decision cache; 0 turns it off.
    cache_size: int = 10_000
    #: L1 entry lifetime, seconds.
    cache_ttl: float = 300.0
    #: Evaluate the shipped constitution's decisions in Rust instead of its Wasm (used only
    #: for a bundle with exactly the shipped rules, after a load-time check against the Wasm;
    #: ``/health`` says which evaluator runs).
    native: bool = True
    #: What runs the evaluations the cache, fast path and native evaluator do not answer:
    #: ``wasm`` (the bundle's Wasm), ``plan`` (its ``/plan.json`` evaluated natively; a bundle
    #: without a usable plan does not load) or ``auto`` (the plan when usable, else the Wasm).
    evaluator: str = "auto"
    #: ``redis://host:port/db`` for the L2 decision cache shared by nodes; None disables L2.
    redis_url: str | None = None
    #: Per-command Redis deadline; past it the decision goes on without L2.
    redis_timeout_ms: float = 50.0
    #: After a Redis failure, seconds during which L2 is skipped before it is tried again.
    redis_retry_after: float = 1.0
    #: L2 entry lifetime, seconds.
    l2_ttl: float = 300.0
    #: Largest request body accepted (after gzip decoding); larger ones get 413.
    max_body_bytes: int = 1 << 20
    #: Most inputs one batch request may carry.
    max_batch: int = 10_000
    #: Per-evaluation deadline. Wasm evaluations run in the pipeline's worker threads (native
    #: decisions and cache hits on the event loop), so this bounds how long a runaway policy
    #: holds one of those threads. None: the engine's default.
    timeout_ms: int | None = 250
    #: Per-instance Wasm memory cap in bytes; None: the engine's default.
    memory_limit: int | None = None
    #: Entrypoint answered by OPA's ``POST /`` (OPA's ``default_decision``).
    default_decision: str = "acgs/main/decision"
    log_level: str = "info"
    #: Where the audit log lives for ``decision_log = "local"`` (and its signing key).
    data_dir: Path = Path(".acgs-data")
    #: Decision logs: None (off, the default), ``local`` (the audit log's SQLite file under
    #: data_dir, shared with an audit service on the same data directory), or the audit
    #: service's URL (``http://127.0.0.1:8003``).
    decision_log: str | None = None
    #: ``digest`` (SHA-256 of the canonical input only) or ``full`` (the input too).
    decision_log_input: str = "digest"
    #: Decisions queued for the log before request handlers wait for room (backpressure).
    decision_log_queue: int = 10_000
    #: ``async``: a decision is answered once its log entry is queued (a crash loses what is
    #: queued). ``sync``: answered only once the audit log acknowledged its event as durable
    #: (concurrent decisions share one append); if it does not, the answer is a 503, never the
    #: decision.
    decision_log_mode: str = "async"
    #: Directory of the decision log's audit outbox (SQLite, one file per process); None:
    #: ``decision-outbox`` under data_dir. Decision events wait there, durable, until the audit
    #: log acknowledged them; a restart delivers what a stopped process left.
    decision_log_outbox: Path | None = None

    @property
    def decision_outbox_dir(self) -> Path:
        return self.decision_log_outbox or self.data_dir / "decision-outbox"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> PolicySettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``. A malformed variable raises
        ``ValueError`` naming it."""
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> PolicySettings:
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        """The settings as JSON-ready values, with credentials in the Redis URL masked."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["bundle"] = str(self.bundle)
        out["data_dir"] = str(self.data_dir)
        out["decision_log_outbox"] = str(self.decision_outbox_dir)
        if self.redis_url and "@" in self.redis_url:
            scheme, _, rest = self.redis_url.partition("://")
            out["redis_url"] = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return out
