"""Observability of the four services, run together in one process as ``acgs serve`` runs them:
each on real uvicorn on a loopback port, each with its own metrics registry.

- every service's ``/metrics`` carries ``acgs_http_*`` under its own ``service`` label, route
  templates (never raw paths) and its own domain metrics only;
- every metric the alert rules and the Grafana dashboard name is exported by a service;
- JSON log lines carry the request id (taken from ``X-Request-ID`` or made up, and echoed) and
  the decision id of a real decision;
- OpenTelemetry spans (in-memory exporter) carry the route, the status and the decision id.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from acgs import SEED_REQUEST
from acgs.services import audit, evolution, policy, sandbox
from acgs.services.common.observability import ObservabilitySettings, configure_logging, current, note_decision
from acgs.services.common.observability.context import MAX_REQUEST_ID, RequestContext, enter, leave
from acgs.services.common.observability.logs import JsonFormatter, TextFormatter
from acgs.services.common.observability.tracing import tracing_for
from tests.services.conftest import RedisServer, ServerThread
from tests.services.sandbox_fixtures import host_problem, make_dirs, settings_for, skip_or_fail

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = ("policy", "evolution", "audit", "sandbox")
#: Families each service alone exports (a prefix each); the HTTP and process families are shared.
OWN_PREFIXES = {
    "policy": ("acgs_decision", "acgs_cache", "acgs_bundle", "acgs_errors", "acgs_fast_path"),
    "evolution": ("acgs_evolution_",),
    "audit": ("acgs_audit_",),
    "sandbox": ("acgs_sandbox_",),
}
EVOLUTION_REQUEST: dict[str, Any] = {
    "agent_id": "agent-7",
    "type": "minor_update",
    "requested_by": "alice@example.com",
    "changes": {"code_changes": ["prompts/system.txt"], "lines_changed": 40},
    "rollback_plan": {
        "procedure": "redeploy the previous prompt",
        "steps": [{"action": "notify", "params": {"message": "restoring prompts/system.txt"}}],
        "tested": True,
        "automated": True,
    },
    "performance_analysis": {"complexity_delta": 0, "memory_delta": 0, "latency_delta": -0.05, "resource_delta": 0},
}


@dataclass
class Stack:
    urls: dict[str, str]
    logs: io.StringIO

    def get(self, service: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.urls[service] + path, timeout=30, **kw)

    def post(self, service: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.urls[service] + path, timeout=60, **kw)

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    problem = host_problem()
    if problem:
        skip_or_fail(problem)
    base = tmp_path_factory.mktemp("stack")
    observability = ObservabilitySettings(log_format="json", access_log=True)
    logs = io.StringIO()
    root_level = logging.getLogger().level
    handler = configure_logging(observability, stream=logs)
    # The policy service on Redis, as in deploy/: its L2 families exist only then.
    redis_server = RedisServer(base)
    redis_server.start()
    data, runs = make_dirs()
    sandbox_service = sandbox.SandboxService(settings_for(data, runs))
    sandbox_service.start()
    apps = {
        "policy": policy.create_app(
            policy.PolicySettings(data_dir=base / "policy", decision_log="local", redis_url=redis_server.url),
            observability=observability,
        ),
        "evolution": evolution.create_app(
            evolution.EvolutionSettings(data_dir=base / "evolution", sweep_interval=3600.0), observability=observability
        ),
        "audit": audit.create_app(
            audit.AuditSettings(data_dir=base / "audit", checkpoint_interval=0.0), observability=observability
        ),
        "sandbox": sandbox.create_app(sandbox_service.settings, service=sandbox_service, observability=observability),
    }
    servers = {name: ServerThread(app) for name, app in apps.items()}
    try:
        for server in servers.values():
            server.__enter__()
        yield Stack({name: f"http://127.0.0.1:{s.port}" for name, s in servers.items()}, logs)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
        sandbox_service.close()
        redis_server.stop()
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def exercised(stack: Stack) -> Stack:
    """Every service has done its job once, so label-dependent series exist."""
    assert stack.post("policy", "/v1/data/acgs/main/decision", json=SEED_REQUEST).status_code == 200
    assert stack.post("policy", "/v1/data/acgs/main/decision", json={"input": SEED_REQUEST}).status_code == 200
    event = {"event_type": "test", "agent_id": "agent-7", "action": "observe", "result": "ok"}
    assert stack.post("audit", "/audit/event", json=event).status_code == 200
    assert stack.get("audit", "/audit/checkpoint").status_code == 200
    assert stack.post("audit", "/audit/verify").json()["ok"] is True
    submitted = stack.post("evolution", "/evolution/request", json=EVOLUTION_REQUEST)
    assert submitted.status_code == 201, submitted.text
    run = {"language": "python", "code": "print(6 * 7)", "agent_id": "agent-7", "agent": {"trust_level": 0.9}}
    executed = stack.post("sandbox", "/execute", json=run)
    assert executed.status_code == 200 and executed.json()["stdout"] == "42\n", executed.text
    return stack


def _scrape(stack: Stack, service: str) -> dict[str, Any]:
    """The families of a service's /metrics, by name, as Prometheus parses them."""
    r = stack.get(service, "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def _sample_names(families: dict[str, Any]) -> set[str]:
    """Every series name a query can use: counters' ``_total``, histograms' ``_bucket``,
    ``_sum``, ``_count``, whether or not the family has samples yet."""
    names: set[str] = set()
    for family in families.values():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def test_each_service_exports_its_own_metrics_in_one_process(exercised: Stack) -> None:
    scraped = {service: _scrape(exercised, service) for service in SERVICES}
    for service, families in scraped.items():
        requests = families["acgs_http_requests"]
        assert requests.type == "counter" and requests.samples, service
        assert {s.labels["service"] for s in requests.samples} == {service}
        assert set(requests.samples[0].labels) == {"service", "route", "method", "code"}
        durations = families["acgs_http_request_duration_seconds"]
        assert durations.type == "histogram"
        assert {s.labels["service"] for s in durations.samples} == {service}
        assert "process_resident_memory_bytes" in families
        others = [p for name, prefixes in OWN_PREFIXES.items() if name != service for p in prefixes]
        strays = [name for name in families if name.startswith(tuple(others))]
        assert not strays, f"{service} exports another service's metrics: {strays}"
        assert any(name.startswith(OWN_PREFIXES[service]) for name in families), service
    # Nothing lands in prometheus_client's global registry, which a second app would collide in.
    assert not [m.name for m in REGISTRY.collect() if m.name.startswith("acgs_")]


def _count(families: dict[str, Any], family: str, **labels: str) -> float:
    return sum(
        s.value
        for s in families[family].samples
        if s.name in (family, family + "_total") and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_routes_are_templates_never_raw_paths(exercised: Stack) -> None:
    exercised.get("evolution", "/evolution/requests/evo_does_not_exist")
    exercised.get("audit", "/audit/events/no-such-event")
    exercised.get("policy", "/no/such/path/12345")
    exercised.get("policy", "/v1/data/acgs/main/decision/allow")
    evolution_metrics = _scrape(exercised, "evolution")
    assert _count(evolution_metrics, "acgs_http_requests", route="/evolution/requests/{request_id}", code="404") == 1
    assert _count(evolution_metrics, "acgs_http_requests", route="/evolution/request", method="POST", code="201") == 1
    audit_metrics = _scrape(exercised, "audit")
    assert _count(audit_metrics, "acgs_http_requests", route="/audit/events/{event_id}", code="404") == 1
    policy_metrics = _scrape(exercised, "policy")
    assert _count(policy_metrics, "acgs_http_requests", route="unmatched", code="404") == 1
    assert _count(policy_metrics, "acgs_http_requests", route="/v1/data/{path}", method="GET", code="200") == 1
    for families in (evolution_metrics, audit_metrics, policy_metrics):
        routes = {s.labels["route"] for s in families["acgs_http_requests"].samples}
        assert not [r for r in routes if "does_not_exist" in r or "no-such" in r or "12345" in r or "acgs/main" in r]


def test_domain_metrics_count_what_happened(exercised: Stack) -> None:
    policy_metrics = _scrape(exercised, "policy")
    assert _count(policy_metrics, "acgs_decisions", outcome="allow") >= 2
    assert _count(policy_metrics, "acgs_decision_logs_dropped") == 0
    audit_metrics = _scrape(exercised, "audit")
    assert _count(audit_metrics, "acgs_audit_events_appended") >= 1
    assert _count(audit_metrics, "acgs_audit_verify_failures") == 0
    assert _count(audit_metrics, "acgs_audit_verify_runs") >= 1
    assert _count(audit_metrics, "acgs_audit_checkpoint_timestamp_seconds") > 1.7e9
    evolution_metrics = _scrape(exercised, "evolution")
    assert sum(s.value for s in evolution_metrics["acgs_evolution_requests_submitted"].samples) >= 1
    assert _count(evolution_metrics, "acgs_evolution_transitions", **{"from": "new", "to": "pending"}) >= 1
    # A configuration change takes the fast track: one reviewer's approval ends the review.
    approvals_before = _count(evolution_metrics, "acgs_evolution_transitions", **{"from": "pending", "to": "approved"})
    fast = exercised.post("evolution", "/evolution/request", json={**EVOLUTION_REQUEST, "type": "configuration"})
    assert fast.status_code == 201 and fast.json()["status"] == "pending", fast.text
    approved = exercised.post(
        "evolution",
        f"/evolution/requests/{fast.json()['request_id']}/approve",
        json={"reason": "config only"},
        headers={"X-ACGS-Identity": "rita", "X-ACGS-Role": "reviewer"},
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
    evolution_metrics = _scrape(exercised, "evolution")
    assert _count(evolution_metrics, "acgs_evolution_requests_submitted", approval_type="fast_track") == 1
    assert _count(evolution_metrics, "acgs_evolution_transitions", **{"from": "pending", "to": "approved"}) == approvals_before + 1
    reviews = {s.labels["verdict"]: s.value for s in evolution_metrics["acgs_evolution_review_duration_seconds"].samples if s.name.endswith("_count")}
    assert reviews == {"approved": 1, "rejected": 0}
    sandbox_metrics = _scrape(exercised, "sandbox")
    assert _count(sandbox_metrics, "acgs_sandbox_runs", runtime="bwrap", status="completed") >= 1
    assert _count(sandbox_metrics, "acgs_sandbox_runtime_available", runtime="bwrap") == 1
    assert _count(sandbox_metrics, "acgs_sandbox_runtime_startup_seconds", runtime="bwrap") > 0
    run_count = [s for s in sandbox_metrics["acgs_sandbox_run_duration_seconds"].samples if s.name.endswith("_count")]
    assert run_count and run_count[0].value >= 1


SYSCALLS = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.syscall(101, 2, 0, 0, 0), flush=True)  # ptrace: a deny rule
libc.syscall(169, 0xfee1dead, 672274793, 0, 0)  # reboot: a kill rule
"""


def test_sandbox_violations_and_limits_are_counted_as_reported(exercised: Stack) -> None:
    before = _scrape(exercised, "sandbox")
    base = {"language": "python", "agent_id": "agent-7", "agent": {"trust_level": 0.9}, "runtime": "bwrap"}
    runs = [
        exercised.post("sandbox", "/execute", json={**base, "code": "import time\ntime.sleep(30)\n", "limits": {"timeout_s": 1}}).json(),
        exercised.post("sandbox", "/execute", json={**base, "code": SYSCALLS}).json(),
    ]
    assert runs[0]["status"] == "timeout" and runs[0]["limits_hit"] == ["timeout_s"], runs[0]
    assert runs[1]["status"] == "killed", runs[1]
    after = _scrape(exercised, "sandbox")

    def delta(family: str, **labels: str) -> float:
        return _count(after, family, **labels) - _count(before, family, **labels)

    assert delta("acgs_sandbox_runs", runtime="bwrap", status="timeout") == 1
    assert delta("acgs_sandbox_runs", runtime="bwrap", status="killed") == 1
    assert delta("acgs_sandbox_limits_hit", runtime="bwrap", limit="timeout_s") == 1
    reported: dict[str, int] = {}
    for run in runs:
        for v in run["violations"]:
            reported[v["action"]] = reported.get(v["action"], 0) + v["count"]
    for action in ("deny", "kill", "enosys"):
        assert delta("acgs_sandbox_syscall_violations", runtime="bwrap", action=action) == reported.get(action, 0)


_METRIC = re.compile(r"\b((?:acgs|process)_[a-z0-9_]+)\b")


def _queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and dashboard panel."""
    out: list[tuple[str, str]] = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out.append((f"alert {rule['alert']}", rule["expr"]))
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "acgs.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r}", target["expr"]))
    return out


def test_alerts_and_dashboard_name_only_exported_metrics(exercised: Stack) -> None:
    exported: set[str] = set()
    for service in SERVICES:
        exported |= _sample_names(_scrape(exercised, service))
    queries = _queries()
    assert len(queries) > 30
    referenced = {name for _, expr in queries for name in _METRIC.findall(expr)}
    assert len(referenced) > 25
    missing = sorted(f"{where}: {name}" for where, expr in queries for name in _METRIC.findall(expr) if name not in exported)
    assert not missing, "names no service exports:\n" + "\n".join(missing)
    # And the other way round: the alert rules watch the families the brief asks them to.
    alert_text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    for needed in (
        "acgs_decision_duration_seconds_bucket",
        "acgs_audit_verify_failures_total",
        "acgs_sandbox_syscall_violations_total",
        "acgs_decision_logs_dropped_total",
        "up{",
    ):
        assert needed in alert_text, needed


def test_json_logs_carry_request_and_decision_ids(exercised: Stack) -> None:
    r = exercised.post("policy", "/v1/data/acgs/main/decision", json=SEED_REQUEST, headers={"X-Request-ID": "req-obs-1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-obs-1"
    decision_id = r.json()["decision_id"]
    lines = [line for line in exercised.log_lines() if line.get("request_id") == "req-obs-1"]
    assert lines, exercised.logs.getvalue()[-2000:]
    access = [line for line in lines if line["logger"] == "acgs.access"]
    assert len(access) == 1
    line = access[0]
    assert line["decision_id"] == decision_id
    assert line["service"] == "policy" and line["level"] == "info"
    assert line["route"] == "/v1/data/{path}" and line["status"] == 200 and line["method"] == "POST"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])

    # OPA's shape (with "input") through FastAPI-free fast path, and a FastAPI route.
    r = exercised.post("policy", "/v1/data/acgs/main/decision", json={"input": SEED_REQUEST}, headers={"X-Request-ID": "req-obs-2"})
    (line,) = [x for x in exercised.log_lines() if x.get("request_id") == "req-obs-2"]
    assert line["decision_id"] == r.json()["decision_id"]
    r = exercised.get("audit", "/health", headers={"X-Request-ID": "req-obs-3"})
    assert r.headers["x-request-id"] == "req-obs-3"
    (line,) = [x for x in exercised.log_lines() if x.get("request_id") == "req-obs-3"]
    assert line["service"] == "audit" and line["route"] == "/health" and "decision_id" not in line

    # Evolution tags its log lines with the change request's decision id.
    r = exercised.post("evolution", "/evolution/request", json=EVOLUTION_REQUEST, headers={"X-Request-ID": "req-obs-5"})
    assert r.status_code == 201
    (line,) = [x for x in exercised.log_lines() if x.get("request_id") == "req-obs-5"]
    assert line["decision_id"] == r.json()["decision_id"] and line["service"] == "evolution"

    # The sandbox tags its log lines with the decision the run belongs to.
    run = {"language": "python", "code": "print(1)", "agent_id": "agent-7", "agent": {"trust_level": 0.9}, "decision_id": "dec-obs-4"}
    r = exercised.post("sandbox", "/execute", json=run, headers={"X-Request-ID": "req-obs-4"})
    assert r.status_code == 200
    (line,) = [x for x in exercised.log_lines() if x.get("request_id") == "req-obs-4"]
    assert line["decision_id"] == "dec-obs-4" and line["service"] == "sandbox"


@pytest.mark.parametrize("sent", ["has space", "x" * (MAX_REQUEST_ID + 1), "semi;colon", "", None])
def test_a_bad_or_missing_request_id_is_replaced(exercised: Stack, sent: str | None) -> None:
    headers = {"X-Request-ID": sent} if sent is not None else {}
    r = exercised.get("policy", "/health", headers=headers)
    echoed = r.headers["x-request-id"]
    assert echoed != sent and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", echoed)
    r = exercised.post("evolution", "/evolution/request", json={"bad": True}, headers=headers)
    assert r.status_code == 422 and r.headers["x-request-id"] != sent


def test_longest_valid_request_id_is_kept(exercised: Stack) -> None:
    sent = "a1._:-" + "z" * (MAX_REQUEST_ID - 6)
    assert exercised.get("sandbox", "/health", headers={"X-Request-ID": sent}).headers["x-request-id"] == sent


# -- formatters and settings, without the stack ----------------------------------------------


def _record(logger: logging.Logger, stream: io.StringIO, formatter: logging.Formatter) -> str:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("the bad thing")
        except ValueError:
            logger.exception("request failed: %s", "boom")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_formatter_carries_context_and_exception() -> None:
    ctx = RequestContext("evolution", "req-unit-1")
    token = enter(ctx)
    try:
        note_decision("dec-unit-1")
        assert current() is ctx
        out = _record(logging.getLogger("acgs.test.json"), io.StringIO(), JsonFormatter())
    finally:
        leave(token)
    assert current() is None
    line = json.loads(out)
    assert line["message"] == "request failed: boom" and line["level"] == "error" and line["logger"] == "acgs.test.json"
    assert line["service"] == "evolution" and line["request_id"] == "req-unit-1" and line["decision_id"] == "dec-unit-1"
    assert "ValueError: the bad thing" in line["exception"] and "Traceback" in line["exception"]


def test_formatters_outside_a_request() -> None:
    out = _record(logging.getLogger("acgs.services.audit.app"), io.StringIO(), JsonFormatter())
    line = json.loads(out)
    assert line["service"] == "audit" and "request_id" not in line and "decision_id" not in line
    ctx = RequestContext("policy", "req-unit-2")
    token = enter(ctx)
    try:
        note_decision("dec-unit-2")
        text = _record(logging.getLogger("acgs.test.text"), io.StringIO(), TextFormatter())
    finally:
        leave(token)
    first = text.splitlines()[0]
    assert "ERROR acgs.test.text [policy request_id=req-unit-2 decision_id=dec-unit-2]: request failed: boom" in first
    assert "ValueError: the bad thing" in text


def test_configure_logging_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    first, second = io.StringIO(), io.StringIO()
    try:
        configure_logging(ObservabilitySettings(log_format="json", log_level="warning"), stream=first)
        handler = configure_logging(ObservabilitySettings(log_format="text", log_level="debug"), stream=second)
        assert [h for h in root.handlers if h not in before] == [handler]
        assert root.level == logging.DEBUG
        assert logging.getLogger("uvicorn.access").propagate and not logging.getLogger("uvicorn.error").handlers
        logging.getLogger("acgs.test.configure").debug("hello %s", "there")
        assert first.getvalue() == "" and "DEBUG acgs.test.configure [acgs]: hello there" in second.getvalue()
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
        root.setLevel(level)


def test_observability_settings_from_environment() -> None:
    env = {
        "ACGS_LOG_FORMAT": "JSON",
        "ACGS_LOG_LEVEL": "Warning",
        "ACGS_ACCESS_LOG": "yes",
        "ACGS_OTEL_ENABLED": "1",
        "ACGS_OTEL_ENDPOINT": "http://collector:4318/",
        "ACGS_OTEL_SERVICE_PREFIX": "prod-acgs-",
    }
    s = ObservabilitySettings.from_env(env)
    assert (s.log_format, s.log_level, s.access_log, s.otel_enabled) == ("json", "warning", True, True)
    assert s.otel_endpoint == "http://collector:4318" and s.otel_service_prefix == "prod-acgs-"
    assert s.level == logging.WARNING
    assert ObservabilitySettings.from_env({}) == ObservabilitySettings()
    assert ObservabilitySettings.from_env({}, access_log=True).access_log is True
    for var, value in (
        ("ACGS_LOG_FORMAT", "xml"),
        ("ACGS_LOG_LEVEL", "loud"),
        ("ACGS_ACCESS_LOG", "maybe"),
        ("ACGS_OTEL_ENDPOINT", "collector:4318"),
    ):
        with pytest.raises(ValueError, match=var):
            ObservabilitySettings.from_env({var: value})
    with pytest.raises(ValueError, match="log_format"):
        ObservabilitySettings(log_format="yaml")


# -- OpenTelemetry ------------------------------------------------------------------------------


def test_spans_carry_route_status_and_decision(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is part of the test extra")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = ObservabilitySettings(otel_enabled=True)
    app = policy.create_app(policy.PolicySettings(data_dir=tmp_path), observability=settings)
    app.observer.tracing = tracing_for(settings, "policy", provider)
    audit_app = audit.create_app(audit.AuditSettings(data_dir=tmp_path / "audit"), observability=settings)
    audit_app.state.observer.tracing = tracing_for(settings, "audit", provider)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"

    import asyncio

    async def calls() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://policy") as client:
            decided = await client.post("/v1/data/acgs/main/decision", json=SEED_REQUEST, headers={"traceparent": parent})
            health = await client.get("/health")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=audit_app), base_url="http://audit") as client:
            scraped = await client.get("/metrics")
        return decided, health, scraped

    decided, health, scraped = asyncio.run(calls())
    assert decided.status_code == 200 and health.status_code == 200 and scraped.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/data/{path}", "GET /health", "GET /metrics"}
    decision = spans["POST /v1/data/{path}"]
    assert decision.kind is SpanKind.SERVER
    assert format(decision.context.trace_id, "032x") == trace_id
    assert decision.parent is not None and format(decision.parent.span_id, "016x") == "00f067aa0ba902b7"
    attrs = dict(decision.attributes or {})
    assert attrs["http.route"] == "/v1/data/{path}" and attrs["http.response.status_code"] == 200
    assert attrs["acgs.decision_id"] == decided.json()["decision_id"]
    assert attrs["acgs.request_id"] == decided.headers["x-request-id"]
    assert decision.status.status_code is not StatusCode.ERROR
    assert dict(spans["GET /metrics"].attributes or {})["http.route"] == "/metrics"
    assert format(spans["GET /health"].context.trace_id, "032x") != trace_id


def test_tracing_is_off_unless_asked_and_builds_an_otlp_exporter() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is part of the test extra")
    assert tracing_for(ObservabilitySettings(), "policy") is None
    tracing = tracing_for(ObservabilitySettings(otel_enabled=True, otel_service_prefix="t-"), "audit")
    assert tracing is not None
    resource = tracing.tracer.resource  # type: ignore[attr-defined]
    assert resource.attributes["service.name"] == "t-audit"
