"""Running one service's app under uvicorn with the settings every service shares: security
(TLS options, the gate's settings, where it may listen) and observability (logging set up
once, before uvicorn)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def run_service(create_app: Callable[..., Any], settings: Any, **uvicorn_options: Any) -> None:
    """Builds the app from ``settings`` and the shared ``ACGS_*`` settings, and serves it on
    ``settings.host:settings.port`` until stopped. Listening beyond loopback with
    authentication off stops the start (status 2) unless ``ACGS_INSECURE=true``."""
    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options
    from acgs.security.bind import OpenBindRefused, check_bind
    from acgs.services.common.observability import ObservabilitySettings, configure_logging

    security = SecuritySettings.from_env()
    observability = ObservabilitySettings.from_env()
    configure_logging(observability)
    service = create_app.__module__.split(".")[-2] if create_app.__module__.count(".") >= 2 else "service"
    try:
        check_bind([(service, settings.host, settings.port)], security)
    except OpenBindRefused as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
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
