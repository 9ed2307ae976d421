"""The evolution oversight service (port 8002): agents submit changes, the constitution's
``acgs.evolution`` policy assesses and routes them, reviewers approve or reject, and approved
changes are deployed and rolled back, every step audited. ``create_app(settings)`` builds it;
``serve(settings)`` runs it."""

from __future__ import annotations

from acgs.services.common.observability import ObservabilitySettings, configure_logging
from acgs.services.evolution.app import create_app
from acgs.services.evolution.settings import EvolutionSettings

__all__ = ["EvolutionSettings", "create_app", "serve"]


def serve(settings: EvolutionSettings | None = None) -> None:
    """Runs the service under uvicorn until stopped."""
    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options

    settings = settings or EvolutionSettings.from_env()
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
