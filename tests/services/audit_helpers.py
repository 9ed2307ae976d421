"""Helpers shared by the audit tests: a log on either backend, events, raw access to the
stored rows for tampering, and the audit service as a real uvicorn subprocess."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import asyncpg

from acgs import _acgs as core
from acgs.audit import AuditLog, open_store
from tests.services.procs import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
PRIVATE_KEY, VERIFIER_KEY = core.generate_signing_key("test.acgs/audit")


def event(i: int, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_type": "policy_decision",
        "agent_id": f"agent-{i % 7}",
        "action": "data.read",
        "result": "allow" if i % 3 else "deny",
        "metadata": {"seq": i, "note": "caf\u00e9 \U0001f600", "score": 0.96},
        "decision_id": f"dec-{i}",
        "constitutional_hash": "cdd01ef066bc6cf2",
    }
    out.update(extra)
    return out


def make_log(url: str) -> AuditLog:
    return AuditLog(open_store(url), PRIVATE_KEY)


def url_for(backend: str, tmp_path: Path, pg_url: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    assert pg_url is not None
    return pg_url


def execute(url: str, sql: str, *args: Any) -> list[Any]:
    """Runs one statement directly on the store's database, as an attacker with write access
    would, and returns its rows."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        try:
            sql = sql.replace("$1", "?").replace("$2", "?").replace("$3", "?")
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def service_env(data_dir: Path, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["ACGS_DATA_DIR"] = str(data_dir)
    env["ACGS_AUDIT_DATABASE_URL"] = url
    env["ACGS_AUDIT_SIGNING_KEY"] = PRIVATE_KEY
    env["ACGS_AUDIT_CHECKPOINT_INTERVAL"] = "0.5"
    env["ACGS_LOG_LEVEL"] = "warning"
    return env


class AuditProcess(ServiceProcess):
    """``python -m acgs.services.audit`` (or ``acgs serve --service audit``) on a loopback port,
    started, killed and restarted."""

    def __init__(self, port: int, env: dict[str, str], log_path: Path, *, via_cli: bool = False) -> None:
        super().__init__("acgs.services.audit", "audit service", port, env, log_path)
        self.via_cli = via_cli

    def command(self) -> list[str]:
        if not self.via_cli:
            return super().command()
        return [sys.executable, "-m", "acgs", "serve", "--service", "audit", "--host", "127.0.0.1", "--port", str(self.port)]
