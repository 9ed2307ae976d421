"""The audit engine service (port 8003): a tamper-evident, append-only log of every governance
event, with Merkle proofs and signed checkpoints a third party can verify offline.
``create_app(settings)`` builds it; ``serve(settings)`` runs it."""

from __future__ import annotations

from acgs.services.common.serving import run_service
from acgs.services.audit.app import create_app
from acgs.services.audit.settings import AuditSettings

__all__ = ["AuditSettings", "create_app", "serve"]


def serve(settings: AuditSettings | None = None) -> None:
    """Runs the service under uvicorn until stopped."""
    run_service(create_app, settings or AuditSettings.from_env())
