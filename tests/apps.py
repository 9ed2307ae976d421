"""The four services' apps as the security and serving tests build them: each in its own
temporary state, with the given security settings; the sandbox's on the module's real
controller (the ``sandbox_service`` fixture of tests/services/sandbox_fixtures.py, which the
calling test module imports)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from acgs.security import SecuritySettings
from acgs.services.audit import AuditSettings
from acgs.services.audit import create_app as audit_app
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution import create_app as evolution_app
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from acgs.services.sandbox import create_app as sandbox_app

SERVICES = ("policy", "evolution", "audit", "sandbox")


def build_app(
    name: str,
    security: SecuritySettings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    *,
    bundle: Path | None = None,
) -> FastAPI:
    """The app of service ``name``; the policy service loads ``bundle`` (the constitution
    shipped in the package when None)."""
    if name == "policy":
        settings = PolicySettings(data_dir=tmp_path) if bundle is None else PolicySettings(data_dir=tmp_path, bundle=bundle)
        return policy_app(settings, security=security)
    if name == "evolution":
        evolution = EvolutionSettings(
            data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'evolution.sqlite3'}", sweep_interval=3600.0
        )
        return evolution_app(evolution, security=security)
    if name == "audit":
        return audit_app(AuditSettings(data_dir=tmp_path / "audit", checkpoint_interval=0), security=security)
    if name != "sandbox":
        raise ValueError(f"no service {name!r} (one of {', '.join(SERVICES)})")
    service = request.getfixturevalue("sandbox_service")
    return sandbox_app(service.settings, service=service, security=security)


def evolution_events(data_dir: Path) -> list[dict[str, Any]]:
    """The audit events an evolution service with its SQLite store in ``data_dir`` has put in
    its outbox, delivered or not, oldest first."""
    from acgs.services.evolution.store import open_store

    async def read() -> list[dict[str, Any]]:
        store = open_store(f"sqlite:///{data_dir / 'evolution.sqlite3'}")
        await store.open()
        try:
            return [dict(e.event) for e in await store.outbox(pending_only=False, limit=1000)]
        finally:
            await store.close()

    return asyncio.run(read())
