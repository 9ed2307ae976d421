"""Running one service's app under uvicorn with the settings every service shares: security
(TLS options, the gate's settings) and observability (logging set up once, before uvicorn)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_service(create_app: Callable[..., Any], settings: Any, **uvicorn_options: Any) -> None:
    """Builds the app from ``settings`` and the shared ``ACGS_*`` settings, and serves it on
    ``settings.host:settings.port`` until stopped."""
    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options
    from acgs.services.common.observability import ObservabilitySettings, configure_logging

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
        **uvicorn_options,
    )
