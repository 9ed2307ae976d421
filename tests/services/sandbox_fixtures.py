"""Fixtures shared by the sandbox controller's tests: a real controller (real bwrap, runsc,
cgroups, tmpfs and constitution) in temporary directories, and helpers to call it.

The sandbox needs root, bubblewrap and runsc. Where they are missing the tests skip, unless
``ACGS_SANDBOX_REQUIRED=1`` (CI on the project's machines), which turns a skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from acgs.services.sandbox import SandboxService, SandboxSettings, create_app
from acgs.services.sandbox.workdir import _mounts_under

REQUIRED = os.environ.get("ACGS_SANDBOX_REQUIRED") == "1"
#: A secret in the controller's environment that no sandbox may see.
CANARY_NAME = "ACGS_SANDBOX_TEST_CANARY"
CANARY = f"canary-{secrets.token_hex(8)}"
os.environ[CANARY_NAME] = CANARY

HIGH_TRUST = {"trust_level": 0.9}


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"ACGS_SANDBOX_REQUIRED=1 but {reason}")
    pytest.skip(reason)


def host_problem() -> str | None:
    if os.geteuid() != 0:
        return "the sandbox controller needs root"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem"
    return None


def make_dirs() -> tuple[Path, Path]:
    """A data dir and a runs dir; the runs dir must be reachable by the sandbox user, which
    pytest's own temporary directories (mode 700) are not."""
    base = Path(tempfile.mkdtemp(prefix="acgs-sandbox-test-"))
    os.chmod(base, 0o711)
    (base / "data").mkdir()
    return base / "data", base / "runs"


def settings_for(data: Path, runs: Path, **overrides: Any) -> SandboxSettings:
    values: dict[str, Any] = {
        "data_dir": data,
        "runs_dir": runs,
        "concurrency": 2,
        "max_queue": 8,
        "output_cap": 4096,
        "cgroup_parent": "acgs-sandbox-test",
    }
    # The suite runs with the warm pool on (the default) and, with ACGS_SANDBOX_POOL_SIZE=0,
    # with every run cold.
    if "ACGS_SANDBOX_POOL_SIZE" in os.environ:
        values["pool_size"] = int(os.environ["ACGS_SANDBOX_POOL_SIZE"])
    values.update(overrides)
    return SandboxSettings(**values)


@pytest.fixture(scope="module")
def sandbox_service() -> Iterator[SandboxService]:
    problem = host_problem()
    if problem:
        skip_or_fail(problem)
    data, runs = make_dirs()
    service = SandboxService(settings_for(data, runs))
    service.start()
    try:
        yield service
    finally:
        service.close()
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def client(sandbox_service: SandboxService) -> Iterator[TestClient]:
    """A client of a fresh app over the module's service: each test starts with its own rate
    window (the constitution allows 20 runs a minute per caller, and a module runs more)."""
    app = create_app(sandbox_service.settings, service=sandbox_service)
    # A loopback name: the services refuse Host names they do not serve (TestClient's default
    # is "testserver").
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=True) as c:
        yield c


def require_runtime(service: SandboxService, runtime: str) -> None:
    status = service.statuses.get(runtime)
    if status is None or not status.available:
        skip_or_fail(f"runtime {runtime} is not available here: {status.reason if status else 'unknown'}")


def execute(
    client: TestClient,
    code: str | None = None,
    *,
    language: str = "python",
    runtime: str = "bwrap",
    agent: dict[str, Any] | None = None,
    expect: int | None = 200,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "language": language,
        "agent_id": fields.pop("agent_id", "agent-test"),
        "agent": agent if agent is not None else HIGH_TRUST,
        "runtime": runtime,
    }
    if code is not None:
        body["code"] = code
    limits = fields.pop("limits", None)
    if limits is not None:
        body["limits"] = limits
    body.update(fields)
    resp = client.post("/execute", json=body)
    if expect is not None:
        assert resp.status_code == expect, resp.text
    out: dict[str, Any] = resp.json()
    return out


def leftovers(service: SandboxService) -> list[str]:
    """Anything a finished run left on the host: processes, cgroups or work dir mounts of this
    controller's runs. The warm pool's waiting sandboxes are not runs; a used one is removed
    in the background after its result (its processes are gone by then), so this waits for
    the pool to settle first and counts a used sandbox it did not remove."""
    assert service.instance is not None and service.host is not None
    assert service.settle(), "the warm pool did not remove its used sandboxes"
    waiting = {str(name) for name in service.pool_waiting()}
    found: list[str] = []
    for h in service.layout.hierarchies:
        inst = h / service.settings.cgroup_parent / service.instance.cgroup_name
        if inst.is_dir():
            found += [str(d) for d in inst.iterdir() if d.is_dir() and d.name not in waiting]
    found += [str(m) for m in _mounts_under(service.instance.dir) if m.name not in waiting]
    found += [
        str(p) for p in service.instance.dir.iterdir() if p.name not in ("runsc", "gvisor-rootfs") and p.name not in waiting
    ]
    return found
