"""The policy engine service (port 8004): OPA's Data API and the seed's decision endpoint over
the constitution bundle. ``create_app(settings)`` builds it; ``serve(settings)`` runs it."""

from __future__ import annotations

from acgs.services.common.observability import ObservabilitySettings, configure_logging
from acgs.services.policy.app import create_app
from acgs.services.policy.settings import PolicySettings

__all__ = ["PolicySettings", "create_app", "serve"]


def serve(settings: PolicySettings | None = None) -> None:
    """Runs the service under uvicorn (uvloop and httptools when installed) until stopped."""
    import os

    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options

    settings = settings or PolicySettings.from_env()
    security = SecuritySettings.from_env()
    observability = ObservabilitySettings.from_env()
    configure_logging(observability)
    common = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,
        "loop": "auto",
        "http": "auto",
        **uvicorn_tls_options(security),
    }
    if settings.workers > 1:
        # Worker processes build the app themselves, from the environment: hand them the
        # settings that way.
        from acgs.services.policy.settings import ENV_NAMES

        for name, var in ENV_NAMES.items():
            value = getattr(settings, name)
            os.environ[var] = "" if value is None else str(value)
        uvicorn.run(
            "acgs.services.policy.app:app_from_env", factory=True, workers=settings.workers, **common
        )
    else:
        uvicorn.run(create_app(settings, security=security, observability=observability), **common)
