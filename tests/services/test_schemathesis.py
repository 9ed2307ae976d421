"""Schemathesis against every service's OpenAPI document: policy (8004), evolution (8002),
audit (8003) and sandbox (8001), each a real uvicorn server on a loopback port with its
embedded defaults in temporary directories (SQLite, the shipped constitution, real bwrap).

Every operation gets generated requests, valid and invalid (Schemathesis's examples, coverage
and fuzzing phases, a bounded number of examples each). Checked: no 5xx response; status
codes, content types and response bodies conform to what the document declares.

The sandbox's ``POST /execute`` stays in: generated requests may really run code. Each run is
held to small limits (2 s wall time, 1 s CPU, 64 MiB, 16 processes), set in the request
itself, so a generated program cannot run long; the constitution still decides everything
else (language, runtime, network), and requests it refuses never start.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from acgs.services.audit import AuditSettings
from acgs.services.audit import create_app as audit_app
from acgs.services.evolution import EvolutionSettings
from acgs.services.evolution import create_app as evolution_app
from acgs.services.policy import PolicySettings
from acgs.services.policy import create_app as policy_app
from acgs.services.sandbox import create_app as sandbox_app
from tests.services.conftest import ServerThread
from tests.services.sandbox_fixtures import host_problem, make_dirs, settings_for, skip_or_fail

#: Generated requests per operation and phase: enough to find the crashes of malformed input,
#: few enough for the whole file to stay well under two minutes on a busy 2-core machine.
EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: What a generated sandbox run may use at most.
RUN_LIMITS = {"timeout_s": 2, "cpu_seconds": 1, "memory_mb": 64, "disk_mb": 8, "pids": 16}

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

# Schemathesis needs each document when the tests are collected, so the apps are built here
# (building one starts nothing: stores open and workers start with the app's lifespan, in the
# fixtures below) and their documents are the ones they serve.
_STATE = Path(tempfile.mkdtemp(prefix="acgs-schemathesis-"))
atexit.register(shutil.rmtree, _STATE, True)
_SANDBOX_DATA, _SANDBOX_RUNS = make_dirs()
atexit.register(shutil.rmtree, _SANDBOX_DATA.parent, True)
APPS: dict[str, Any] = {
    "policy": policy_app(PolicySettings(data_dir=_STATE / "policy")),
    "audit": audit_app(AuditSettings(data_dir=_STATE / "audit", checkpoint_interval=0, segment_size=0)),
    "evolution": evolution_app(
        EvolutionSettings(data_dir=_STATE / "evolution", database_url=f"sqlite:///{_STATE / 'evolution.sqlite3'}")
    ),
    "sandbox": sandbox_app(settings_for(_SANDBOX_DATA, _SANDBOX_RUNS, max_queue=16)),
}
SCHEMAS = {name: schemathesis.openapi.from_dict(app.openapi()) for name, app in APPS.items()}


def _serve(name: str) -> Iterator[str]:
    with ServerThread(APPS[name]) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def policy_url() -> Iterator[str]:
    yield from _serve("policy")


@pytest.fixture(scope="module")
def audit_url() -> Iterator[str]:
    yield from _serve("audit")


@pytest.fixture(scope="module")
def evolution_url() -> Iterator[str]:
    yield from _serve("evolution")


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    problem = host_problem()
    if problem:
        skip_or_fail(problem)
    yield from _serve("sandbox")


def _bounded(case: Any) -> None:
    """Caps the limits of a generated sandbox run (see the module docstring); a body or limits
    of the wrong shape is left as generated, for the service to refuse."""
    body = case.body
    if case.operation.path != "/execute" or not isinstance(body, dict):
        return
    limits = body.setdefault("limits", {})
    if not isinstance(limits, dict):
        return
    for name, cap in RUN_LIMITS.items():
        value = limits.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value > cap:
            limits[name] = cap


@SCHEMAS["policy"].parametrize()
@fuzz
def test_policy(case: Any, policy_url: str) -> None:
    case.call_and_validate(base_url=policy_url, checks=CHECKS, timeout=30)


@SCHEMAS["audit"].parametrize()
@fuzz
def test_audit(case: Any, audit_url: str) -> None:
    case.call_and_validate(base_url=audit_url, checks=CHECKS, timeout=30)


@SCHEMAS["evolution"].parametrize()
@fuzz
def test_evolution(case: Any, evolution_url: str) -> None:
    case.call_and_validate(base_url=evolution_url, checks=CHECKS, timeout=30)


@SCHEMAS["sandbox"].parametrize()
@fuzz
def test_sandbox(case: Any, sandbox_url: str) -> None:
    _bounded(case)
    case.call_and_validate(base_url=sandbox_url, checks=CHECKS, timeout=30)


# -- what Schemathesis found, pinned ----------------------------------------------------------

TOO_BIG = 1 << 63  # one past the largest 64-bit signed integer the stores take


def test_offsets_and_indices_past_64_bits_are_refused_not_crashed_on(audit_url: str, evolution_url: str) -> None:
    for url in (
        f"{evolution_url}/evolution/requests?offset={TOO_BIG}",
        f"{audit_url}/audit/events?after={TOO_BIG}",
        f"{audit_url}/audit/consistency?from=0&to={TOO_BIG}",
    ):
        r = httpx.get(url)
        assert r.status_code == 422, (url, r.text)
        assert "less than or equal to" in r.json()["message"]
    r = httpx.post(f"{audit_url}/audit/verify", json={"from": TOO_BIG})
    assert r.status_code == 422, r.text
    # The largest value that fits is still served.
    assert httpx.get(f"{evolution_url}/evolution/requests?offset={TOO_BIG - 1}").json()["items"] == []
    assert httpx.get(f"{audit_url}/audit/events?after={TOO_BIG - 1}").json()["events"] == []


def test_sandbox_answers_a_body_that_is_not_json_in_its_error_shape(sandbox_url: str) -> None:
    r = httpx.post(f"{sandbox_url}/execute", content=b"\xff\x00 not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_request" and r.json()["message"]
    r = httpx.get(f"{sandbox_url}/no/such/path")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_metrics_are_documented_as_text(policy_url: str, audit_url: str) -> None:
    for name in ("policy", "audit"):
        content = APPS[name].openapi()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/plain"], (name, content)
    for url in (policy_url, audit_url):
        assert httpx.get(f"{url}/metrics").headers["content-type"].startswith("text/plain")
