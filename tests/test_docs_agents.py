"""docs/agents.md runs as written: its Python blocks, in order, in one namespace, on the
constitution shipped with ACGS; the remote example against a real policy service on a loopback
port (its URL put in place of the documented one)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

import acgs
from acgs.security import SecuritySettings
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from tests.services.conftest import ServerThread

DOC = Path(__file__).resolve().parent.parent / "docs" / "agents.md"
DOCUMENTED_URL = "http://127.0.0.1:8004"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_quickstart_is_about_ten_lines_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = blocks()[0]
    assert len([line for line in quickstart.splitlines() if line.strip()]) <= 12
    exec(compile(quickstart, f"{DOC}:quickstart", "exec"), {})
    out = capsys.readouterr().out
    assert "contents of /workspace/notes.txt" in out
    assert "/etc/passwd" in out or "path" in out  # the deny's reasons were printed


def test_every_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ACGS_API_KEY", raising=False)
    monkeypatch.delenv("ACGS_AUDIT_SIGNING_KEY", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the audit example's directory
    app = policy_app(PolicySettings(data_dir=tmp_path, bundle=acgs.default_bundle_path()), security=SecuritySettings())
    namespace: dict[str, object] = {}
    with ServerThread(app) as server:
        for i, code in enumerate(blocks()):
            code = code.replace(DOCUMENTED_URL, f"http://127.0.0.1:{server.port}")
            exec(compile(code, f"{DOC}:block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "sent" in out and "password=****" in out
    assert "no_exfiltration_after_secrets" in out
    assert "allow\n" in out  # the remote decision
    assert "allowed {'path': '/workspace/notes.txt'}" in out and "True" in out
