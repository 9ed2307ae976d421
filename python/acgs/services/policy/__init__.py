"""The policy engine service (port 8004): OPA's Data API and the seed's decision endpoint over
the constitution bundle. ``create_app(settings)`` builds it; ``serve(settings)`` runs it."""

from __future__ import annotations

import sys

from acgs.services.common.observability import ObservabilitySettings, configure_logging
from acgs.services.common.serving import run_service
from acgs.services.policy.app import create_app
from acgs.services.policy.settings import PolicySettings

__all__ = ["PolicySettings", "create_app", "serve"]


def serve(settings: PolicySettings | None = None) -> None:
    """Runs the service under uvicorn (uvloop and httptools when installed) until stopped."""
    settings = settings or PolicySettings.from_env()
    if settings.workers <= 1:
        run_service(create_app, settings, loop="auto", http="auto")
        return
    import os

    import uvicorn

    from acgs.security import SecuritySettings, uvicorn_tls_options
    from acgs.services.policy.settings import ENV_NAMES

    from acgs.security.bind import OpenBindRefused, check_bind

    configure_logging(ObservabilitySettings.from_env())
    try:
        check_bind([("policy", settings.host, settings.port)], SecuritySettings.from_env())
    except OpenBindRefused as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Worker processes build the app themselves, from the environment: hand them the
    # settings that way.
    for name, var in ENV_NAMES.items():
        value = getattr(settings, name)
        os.environ[var] = "" if value is None else str(value)
    uvicorn.run(
        "acgs.services.policy.app:app_from_env",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        loop="auto",
        http="auto",
        **uvicorn_tls_options(SecuritySettings.from_env()),
    )
