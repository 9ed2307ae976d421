"""The audit engine service (port 8003): a tamper-evident, append-only log of every governance
event, with Merkle proofs and signed checkpoints a third party can verify offline.
``create_app(settings)`` builds it; ``serve(settings)`` runs it."""

from __future__ import annotations

from acgs.services.common.observability import ObservabilitySettings, configure_logging
from acgs.services.audit.app import create_app
from acgs.services.audit.settings import AuditSettings

__all__ = ["AuditSettings", "create_app", "serve"]


def serve(settings: AuditSettings | None = None) -> None:
    """Runs the service under uvicorn until stopped."""
    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options

    settings = settings or AuditSettings.from_env()
    security = SecuritySettings.from_env()
    observability = ObservabilitySettings.from_env()
    configure_logging(observability)
    uvicorn.run(
        create_app(settings, security=security, observability=observability),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        **uvicorn_tls_options(security),
    )
