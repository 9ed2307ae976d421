"""``acgs audit verify`` against someone with write access to the audit database: a payload
edited with its chain and Merkle roots recomputed, checkpoints deleted or re-signed with
another key, and query columns (agent id, event type, decision id) edited apart from their
payload. Each fails verification, with the first bad index or a checkpoint error, on SQLite and
on PostgreSQL.

Before the fix ``verify`` compared the re-hashed events with the root stored in the same
database (so recomputing it passed), did not look for deleted checkpoints, never checked a
checkpoint's signature, and never compared the query columns with the payload; and
``verify-export`` without ``--key`` trusted the key inside the file."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import acgs
from acgs import _acgs as core
from acgs.audit import keys
from acgs.audit.cli import _verify
from acgs.audit.log import AuditLog
from acgs.audit.store import open_store
from tests.services.audit_helpers import PRIVATE_KEY, VERIFIER_KEY, event, execute, url_for

N = 30


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def log_at(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, Path]:
    """A log of ``N`` events with checkpoints at 10, 20 and 30, written as the service writes it
    (signing key and witnessed checkpoint in the data directory)."""
    pg = request.getfixturevalue("postgres_database") if backend == "postgres" else None
    url = url_for(backend, tmp_path, pg)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / keys.KEY_FILE).write_text(PRIVATE_KEY + "\n")

    async def write() -> None:
        log = AuditLog(open_store(url), PRIVATE_KEY, witness=data_dir / keys.WITNESS_FILE)
        await log.open()
        try:
            for part in range(3):
                await log.append([event(i) for i in range(part * 10, part * 10 + 10)])
                await log.checkpoint()
        finally:
            await log.close()

    asyncio.run(write())
    return url, data_dir


def _env() -> dict[str, str]:
    # The key comes from the data directory, as for an operator's `acgs audit verify`.
    env = {k: v for k, v in os.environ.items() if k != "ACGS_AUDIT_SIGNING_KEY"}
    # The acgs under test (the one this process imported).
    env["PYTHONPATH"] = str(Path(acgs.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli_verify(url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "acgs", "audit", "verify", "--data-dir", str(data_dir), "--database-url", url]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)


def sql(url: str, statement: str, *args: Any) -> list[Any]:
    if not url.startswith("postgres"):
        statement = re.sub(r"\$\d+", "?", statement)
    return execute(url, statement, *args)


def verify_with(url: str, data_dir: Path, **options: Any) -> tuple[int, dict[str, Any]]:
    """``acgs audit verify`` in process, with the options the command line passes."""
    args = argparse.Namespace(config=None, data_dir=data_dir, database_url=url, from_index=0, to_index=None,
                              progress=False, key=None, key_id=None, witness=None)  # fmt: skip
    for name, value in options.items():
        setattr(args, name, value)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = asyncio.run(_verify(args))
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else {}


def rewrite(url: str, index: int, *, roots: bool) -> None:
    """Edits event ``index``'s payload and recomputes every content and chain hash after it (and,
    with ``roots``, the Merkle root column of every checkpoint), as an attacker can."""
    rows = execute(url, "SELECT idx, payload FROM audit_events ORDER BY idx")
    payloads = [bytes(r[1]) for r in rows]
    payloads[index] = payloads[index].replace(b'"result":"deny"', b'"result":"allow"').replace(b'"action":"data.read"', b'"action":"data.rEad"')
    prev = b"\0" * 32
    leaves = []
    for i, payload in enumerate(payloads):
        content, chain = core.event_hashes(prev, payload)
        if i >= index:
            sql(url, "UPDATE audit_events SET payload = $1, content_hash = $2, chain_hash = $3 WHERE idx = $4", payload, content, chain, i)
        leaves.append(core.leaf_hash(content))
        prev = chain
    if url.startswith("postgres"):
        execute(url, "UPDATE audit_head SET chain_hash = $1 WHERE id = 1", prev)
    if roots:
        for (size,) in execute(url, "SELECT size FROM audit_checkpoints"):
            execute(url, "UPDATE audit_checkpoints SET root = $1 WHERE size = $2", core.merkle_root(leaves[:size]), size)


def test_an_intact_log_verifies(log_at: tuple[str, Path]) -> None:
    url, data_dir = log_at
    done = cli_verify(url, data_dir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["checkpoints_checked"] == 4 and report["witness_size"] == N
    # Pinned to the published key id.
    code, report = verify_with(url, data_dir, key_id=VERIFIER_KEY.split("+")[1])
    assert code == 0 and report["ok"]
    code, _ = verify_with(url, data_dir, key_id="00000000")
    assert code == 2


@pytest.mark.parametrize("roots", [False, True], ids=["chain-recomputed", "chain-and-roots-recomputed"])
def test_a_rewritten_history_fails(log_at: tuple[str, Path], roots: bool) -> None:
    url, data_dir = log_at
    rewrite(url, 12, roots=roots)
    done = cli_verify(url, data_dir)
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    assert not report["ok"]
    if roots:
        # The stored roots no longer match the notes the pinned key signed.
        assert "does not match its signed note" in report["checkpoint_error"]
    else:
        assert report["reason"] == "checkpoint_mismatch" and "size 20" in report["detail"]
    assert "not verify" in done.stderr


def test_deleted_checkpoints_fail(log_at: tuple[str, Path]) -> None:
    url, data_dir = log_at
    rewrite(url, 12, roots=True)
    execute(url, "DELETE FROM audit_checkpoints WHERE size > 10")
    done = cli_verify(url, data_dir)
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    assert "missing from it (checkpoints were deleted)" in report["checkpoint_error"]
    # All of them, too.
    execute(url, "DELETE FROM audit_checkpoints")
    assert cli_verify(url, data_dir).returncode == 1


def test_checkpoints_signed_with_another_key_fail(log_at: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = log_at
    rewrite(url, 12, roots=False)
    forger, forger_verifier = core.generate_signing_key("test.acgs/audit")
    execute(url, "DELETE FROM audit_checkpoints")

    async def resign() -> None:
        log = AuditLog(open_store(url), forger)
        await log.open()
        try:
            await log.checkpoint()
        finally:
            await log.close()

    asyncio.run(resign())
    (data_dir / keys.WITNESS_FILE).unlink()
    code, report = verify_with(url, data_dir)
    assert code == 1 and "signature does not verify with the pinned key" in report["checkpoint_error"]
    # Given the forger's key it would pass: the key must come from outside the database.
    key_file = tmp_path / "forged.pub"
    key_file.write_text(forger_verifier)
    assert verify_with(url, data_dir, key=key_file)[0] == 0


@pytest.mark.parametrize("column, value", [("agent_id", "agent-innocent"), ("event_type", "heartbeat"), ("decision_id", "dec-other"), ("ts_us", 1)])
def test_an_edited_query_column_fails_at_its_index(log_at: tuple[str, Path], column: str, value: Any) -> None:
    url, data_dir = log_at
    execute(url, f"UPDATE audit_events SET {column} = $1 WHERE idx = $2", value, 17)
    done = cli_verify(url, data_dir)
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    assert report["first_bad_index"] == 17 and report["reason"] == "derived_column_mismatch"
    assert column in report["detail"] and "at index 17" in done.stderr


def test_verify_needs_a_key_outside_the_database(log_at: tuple[str, Path]) -> None:
    url, data_dir = log_at
    (data_dir / keys.KEY_FILE).unlink()
    done = cli_verify(url, data_dir)
    assert done.returncode == 2 and "--key" in done.stderr


def test_verify_export_without_a_key_exits_non_zero(log_at: tuple[str, Path], tmp_path: Path) -> None:
    url, data_dir = log_at
    exported = tmp_path / "segment.json"
    env = _env()
    run = [sys.executable, "-m", "acgs", "audit"]
    done = subprocess.run([*run, "export", "--data-dir", str(data_dir), "--database-url", url, str(exported)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*run, "verify-export", str(exported)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--key" in done.stderr
    done = subprocess.run([*run, "verify-export", str(exported), "--key", VERIFIER_KEY], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
