"""`acgs serve`: all four services in one process on one configuration file, as a user starts
them. A decision, an evolution request (submitted with `acgs evolution submit`) and a sandbox
run (`acgs sandbox run`) each land in the one audit log, which `acgs audit verify` checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import acgs
from tests.services.conftest import free_port
from tests.services.sandbox_fixtures import host_problem, make_dirs, skip_or_fail
from tests.services.test_evolution_service import MINOR

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("policy", "evolution", "audit", "sandbox")


class Stack:
    def __init__(self, config: Path, ports: dict[str, int], env: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
        self.config = config
        self.ports = ports
        self.env = env
        self.proc = proc

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def acgs(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "acgs", *args], env=self.env, input=input, capture_output=True, text=True, timeout=120
        )

    def audit_events(self, **params: Any) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url('audit')}/audit/events", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return [e["event"] for e in r.json()["events"]]


def _write_config(path: Path, data: Path, runs: Path, ports: dict[str, int]) -> None:
    lines = [f'data_dir = "{data}"', 'log_level = "warning"']
    for name in SERVICES:
        lines += ["", f"[{name}]", f"port = {ports[name]}"]
        if name == "sandbox":
            lines += [f'runs_dir = "{runs}"', 'cgroup_parent = "acgs-sandbox-test"']
        if name == "audit":
            lines += ["checkpoint_interval = 1.0"]
    path.write_text("\n".join(lines) + "\n")


def _fresh_config() -> tuple[Path, dict[str, int]]:
    """A configuration file with free ports and fresh data and runs directories."""
    problem = host_problem()
    if problem:
        skip_or_fail(problem)
    data, runs = make_dirs()
    ports = {name: free_port() for name in SERVICES}
    config = data / "acgs.toml"
    _write_config(config, data, runs, ports)
    return config, ports


def _start(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "acgs", "--config", str(config), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_up(proc: subprocess.Popen[bytes], urls: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            pytest.fail(f"acgs serve exited with {proc.returncode}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"services did not come up: {pending}"
        try:
            if httpx.get(f"{pending[0]}/health", timeout=1).status_code == 200:
                pending.pop(0)
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    config, ports = _fresh_config()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]),
        "ACGS_CONFIG": str(config),
    }
    for var in [v for v in env if v.startswith("ACGS_") and v != "ACGS_CONFIG" and not v.endswith("_REQUIRED")]:
        del env[var]
    proc = _start(config, env)
    stack = Stack(config, ports, env, proc)
    try:
        _wait_up(proc, [stack.url(name) for name in SERVICES])
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_every_service_answers_on_its_port(stack: Stack) -> None:
    for name in SERVICES:
        r = httpx.get(f"{stack.url(name)}/health", timeout=5)
        assert r.status_code == 200, (name, r.text)


def test_a_decision_lands_in_the_audit_log(stack: Stack) -> None:
    r = httpx.post(f"{stack.url('policy')}/v1/data/acgs/main/decision", json={"input": acgs.SEED_REQUEST}, timeout=10)
    assert r.status_code == 200 and r.json()["result"]["allow"] is True
    decision_id = r.json()["decision_id"]
    events = _eventually(lambda: stack.audit_events(decision_id=decision_id))
    assert events[0]["event_type"] == "policy_decision" and events[0]["result"] == "allow"


def test_evolution_submit_from_the_cli_lands_in_the_audit_log(stack: Stack) -> None:
    done = stack.acgs("evolution", "submit", "-", input=json.dumps({**MINOR, "agent_id": "agent-serve-all"}))
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["status"] == "approved"
    listed = stack.acgs("evolution", "list", "--agent-id", "agent-serve-all")
    assert listed.returncode == 0 and request["request_id"] in listed.stdout
    events = _eventually(lambda: stack.audit_events(agent_id="agent-serve-all", event_type="evolution_transition"))
    assert events and all(e["agent_id"] == "agent-serve-all" for e in events)


def test_sandbox_run_from_the_cli_lands_in_the_audit_log(stack: Stack) -> None:
    done = stack.acgs("sandbox", "run", "--agent-id", "agent-sandboxed", "-c", "print(6 * 7)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"
    events = _eventually(lambda: stack.audit_events(agent_id="agent-sandboxed", event_type="sandbox_execution"))
    assert events[0]["result"] == "completed"
    # A run the code fails: the command exits with the run's status.
    failed = stack.acgs("sandbox", "run", "--agent-id", "agent-sandboxed", "-c", "import sys; sys.exit(3)")
    assert failed.returncode == 3


def test_the_audit_log_verifies_offline(stack: Stack) -> None:
    _eventually(lambda: len(stack.audit_events()) >= 3)
    done = stack.acgs("audit", "verify")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_sigterm_stops_every_service(stack: Stack) -> None:
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(60) == 0
    for name in SERVICES:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{stack.url(name)}/health", timeout=2)


def test_a_busy_port_stops_the_start_with_status_1(tmp_path: Path) -> None:
    import socket

    config, ports = _fresh_config()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["audit"]))
        busy.listen()
        proc = _start(config, env)
        try:
            assert proc.wait(120) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "the audit service failed to start" in err


def test_a_bad_configuration_stops_the_start_with_status_2(tmp_path: Path) -> None:
    config = tmp_path / "acgs.toml"
    config.write_text("[policy]\nport = \"eighty\"\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "acgs", "--config", str(config), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "[policy] port: expected an integer" in done.stderr
