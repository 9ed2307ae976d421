"""The evolution oversight service (port 8002): agents submit changes, the constitution's
``acgs.evolution`` policy assesses and routes them, reviewers approve or reject, and approved
changes are deployed and rolled back, every step audited. ``create_app(settings)`` builds it;
``serve(settings)`` runs it."""

from __future__ import annotations

from acgs.services.common.serving import run_service
from acgs.services.evolution.app import create_app
from acgs.services.evolution.settings import EvolutionSettings

__all__ = ["EvolutionSettings", "create_app", "serve"]


def serve(settings: EvolutionSettings | None = None) -> None:
    """Runs the service under uvicorn until stopped."""
    run_service(create_app, settings or EvolutionSettings.from_env())
