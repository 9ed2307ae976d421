"""Helpers shared by the audit tests: a log on either backend, events, raw access to the
stored rows for tampering, and the audit service as a real uvicorn subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from acgs import _acgs as core
from acgs.audit import AuditLog, open_store

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


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path, what: str, timeout: float) -> None:
    """Waits until a service process started by a test answers GET /health with 200; raises
    with the tail of its log if it exits or does not get there in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become healthy:\n{log_path.read_text()[-3000:]}")


class AuditProcess:
    """``python -m acgs.services.audit`` on a loopback port, started, killed and restarted."""

    def __init__(self, port: int, env: dict[str, str], log_path: Path, *, via_cli: bool = False) -> None:
        self.via_cli = via_cli
        self.port = port
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            command = ["acgs", "serve", "--service", "audit"] if self.via_cli else ["acgs.services.audit"]
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *command, "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_healthy(self.proc, self.url, self.log_path, "audit service", timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def running(proc: AuditProcess) -> Iterator[AuditProcess]:
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
