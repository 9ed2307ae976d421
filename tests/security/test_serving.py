"""Serving: what a web page in the operator's browser, or a client on another host, can do to
the four services.

- DNS rebinding: a page whose name resolves to 127.0.0.1 sends its own name in ``Host``; every
  service refuses it (GET and POST), auth on or off.
- Cross-site posts: ``Origin`` of another site, ``Sec-Fetch-Site: cross-site``/``same-site``,
  ``Origin: null``: refused on every service.
- A JSON body sent as ``text/plain`` (a form or ``fetch`` without a CORS preflight) or as a
  form is refused (415); the review page's own forms still post.
- With authentication off the services refuse to listen beyond loopback unless ``--insecure``.
- A slow evaluation on the policy service does not hold up the other services of
  ``acgs serve``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from acgs import SEED_REQUEST
from acgs.security import SecuritySettings
from tests.apps import build_app
from tests.services.conftest import free_port
from tests.services.sandbox_fixtures import host_problem, make_dirs, sandbox_service, skip_or_fail
from tests.services.test_evolution_service import MINOR

__all__ = ["sandbox_service"]  # the module-scoped real sandbox controller

ROOT = Path(__file__).resolve().parents[2]
STRESS = ROOT / "tests" / "fixtures" / "stress.tar.gz"
EVIL = "https://evil.example"
AUDIT_EVENT = {
    "event_type": "constitutional_validation",
    "agent_id": "agent-42",
    "action": "data.read_public",
    "result": "allowed",
    "metadata": {"compliance_score": 0.96},
}


@dataclass(frozen=True)
class Service:
    """A service, its port, a state-changing route with a body it accepts, and its error style."""

    name: str
    port: int
    path: str
    body: Any
    ok: int
    #: Top-level ``code`` of a 400/415 and of a 403 (OPA's on policy and audit).
    invalid: str
    forbidden: str = "forbidden"


SERVICES = [
    Service("policy", 8004, "/v1/data/acgs/main/decision", {"input": SEED_REQUEST}, 200, "invalid_parameter"),
    Service("evolution", 8002, "/evolution/request", MINOR, 201, "invalid_request"),
    Service("audit", 8003, "/audit/event", AUDIT_EVENT, 200, "invalid_parameter"),
    # An empty request: it reaches the route, which says what is missing (no code runs).
    Service("sandbox", 8001, "/execute", {}, 400, "invalid_request"),
]


def build(name: str, security: SecuritySettings, tmp_path: Path, request: pytest.FixtureRequest) -> FastAPI:
    """The service's app (tests/apps.py); the policy service on the shipped constitution."""
    return build_app(name, security, tmp_path, request)


@pytest.fixture(params=SERVICES, ids=[s.name for s in SERVICES])
def service(request: pytest.FixtureRequest) -> Service:
    s: Service = request.param
    return s


@pytest.fixture
def client(service: Service, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The service with its defaults (auth off, no host configured), called as a local client
    calls it: ``Host: 127.0.0.1:<port>``."""
    app = build(service.name, SecuritySettings(data_dir=tmp_path), tmp_path, request)
    with TestClient(app, base_url=f"http://127.0.0.1:{service.port}") as c:
        yield c


def refused(response: httpx.Response, status: int, code: str, reason: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code and body["errors"][0]["code"] == reason, body
    message: str = body["message"]
    return message


def post(client: TestClient, service: Service, **kwargs: Any) -> httpx.Response:
    if "content" not in kwargs:
        kwargs["json"] = service.body
    return client.post(service.path, **kwargs)


# -- DNS rebinding ------------------------------------------------------------------------------


def test_a_foreign_host_name_is_refused_on_get_and_post(client: TestClient, service: Service) -> None:
    for host in ("evil.example", f"evil.example:{service.port}", "127.0.0.1.evil.example", "localhost.evil.example:80"):
        message = refused(client.get("/health", headers={"Host": host}), 400, service.invalid, "host_not_allowed")
        assert "allowed_hosts" in message
        refused(post(client, service, headers={"Host": host}), 400, service.invalid, "host_not_allowed")
    # Malformed names are foreign too.
    for host in (f"127.0.0.1:{service.port}@evil.example", "[::1", "localhost:80:80", "localhost:http"):
        refused(client.get("/health", headers={"Host": host}), 400, service.invalid, "host_not_allowed")


def test_loopback_names_are_accepted_with_or_without_a_port(client: TestClient, service: Service) -> None:
    for host in ("localhost", f"localhost:{service.port}", "127.0.0.1", "[::1]", f"[::1]:{service.port}", "LOCALHOST."):
        r = client.get("/health", headers={"Host": host})
        assert r.status_code == 200, (host, r.text)
    r = post(client, service)
    assert r.status_code == service.ok, r.text


def test_configured_host_names_are_accepted_and_others_still_refused(
    service: Service, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    security = SecuritySettings(data_dir=tmp_path, allowed_hosts=("acgs.internal", f"{service.name}:{service.port}"))
    app = build(service.name, security, tmp_path, request)
    with TestClient(app, base_url="http://acgs.internal") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": f"{service.name}:{service.port}"}).status_code == 200
        # A name configured with a port is accepted on that port only.
        refused(c.get("/health", headers={"Host": f"{service.name}:1"}), 400, service.invalid, "host_not_allowed")
        refused(c.get("/health", headers={"Host": "evil.example"}), 400, service.invalid, "host_not_allowed")
        assert post(c, service).status_code == service.ok


def test_with_auth_on_a_foreign_host_is_refused_before_credentials(
    service: Service, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = build(service.name, SecuritySettings(data_dir=tmp_path, auth=True), tmp_path, request)
    with TestClient(app, base_url=f"http://127.0.0.1:{service.port}") as c:
        refused(c.get("/health", headers={"Host": "evil.example"}), 400, service.invalid, "host_not_allowed")
        refused(post(c, service, headers={"Host": "evil.example"}), 400, service.invalid, "host_not_allowed")
        refused(post(c, service, headers={"Origin": EVIL}), 403, service.forbidden, "cross_site_request")
        # A local client without credentials gets as far as the gate.
        assert post(c, service).status_code == 401


# -- cross-site requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        # Another port of the same host is another origin (a dev server on localhost:3000).
        {"Origin": "http://127.0.0.1:3000", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://localhost:3000"},
    ],
    ids=["origin", "origin+fetch-site", "cross-site", "same-site", "null", "other-port", "other-port-no-fetch-site"],
)
def test_a_post_from_another_site_is_refused(client: TestClient, service: Service, headers: dict[str, str]) -> None:
    message = refused(post(client, service, headers=headers), 403, service.forbidden, "cross_site_request")
    assert "refused" in message


def test_the_services_own_origin_and_configured_origins_may_post(
    service: Service, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    security = SecuritySettings(data_dir=tmp_path, allowed_origins=("https://console.example",))
    app = build(service.name, security, tmp_path, request)
    with TestClient(app, base_url=f"http://127.0.0.1:{service.port}") as c:
        same = {"Origin": f"http://127.0.0.1:{service.port}", "Sec-Fetch-Site": "same-origin"}
        assert post(c, service, headers=same).status_code == service.ok
        console = {"Origin": "https://console.example", "Sec-Fetch-Site": "cross-site"}
        assert post(c, service, headers=console).status_code == service.ok
        # A GET is a read: whoever sent it cannot read the answer of another origin.
        assert c.get("/health", headers={"Sec-Fetch-Site": "cross-site", "Origin": EVIL}).status_code == 200


# -- content types ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_that_is_not_declared_json_is_refused(
    client: TestClient, service: Service, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    raw = json.dumps(service.body).encode()
    message = refused(
        post(client, service, content=raw, headers=headers), 415, service.invalid, "unsupported_media_type"
    )
    assert "application/json" in message


def test_json_content_types_are_accepted(client: TestClient, service: Service) -> None:
    raw = json.dumps(service.body).encode()
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.acgs+json"):
        r = post(client, service, content=raw, headers={"Content-Type": content_type})
        assert r.status_code == service.ok, (content_type, r.text)


def test_the_policy_fast_path_applies_the_same_checks(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Decision routes skip FastAPI's middleware stack; the guard still stands in front of them."""
    app = build("policy", SecuritySettings(data_dir=tmp_path), tmp_path, request)
    raw = json.dumps(SEED_REQUEST).encode()
    with TestClient(app, base_url="http://127.0.0.1:8004") as c:
        for path in ("/v1/data/acgs/main/decision", "/", "/v1/batch/data/acgs/main/decision"):
            refused(c.post(path, content=raw, headers={"Host": "evil.example"}), 400, "invalid_parameter", "host_not_allowed")
            refused(c.post(path, content=raw, headers={"Content-Type": "text/plain"}), 415, "invalid_parameter", "unsupported_media_type")
            refused(c.post(path, json={}, headers={"Origin": EVIL}), 403, "forbidden", "cross_site_request")
        refused(c.get("/v1/data/acgs/main/decision", headers={"Host": "evil.example"}), 400, "invalid_parameter", "host_not_allowed")
        assert c.post("/v1/data/acgs/main/decision", json={"input": SEED_REQUEST}).json()["result"]["allow"] is True
        assert c.post("/v1/data/acgs/main/decision", content=raw, headers={"Content-Type": "application/json"}).json()["allow"] is True


def test_only_the_review_page_takes_forms_and_only_from_itself(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    app = build("evolution", SecuritySettings(data_dir=tmp_path), tmp_path, request)
    with TestClient(app, base_url="http://127.0.0.1:8002") as c:
        created = c.post("/evolution/request", json=MINOR).json()
        form = {"reviewer": "rita", "reason": "fine"}
        # The API takes no forms.
        r = c.post(f"/evolution/requests/{created['request_id']}/approve", data=form)
        refused(r, 415, "invalid_request", "unsupported_media_type")
        # The page's form, posted by another site: refused before it reaches the route.
        url = f"/evolution/review/{created['request_id']}/approve"
        refused(c.post(url, data=form, headers={"Origin": EVIL}), 403, "forbidden", "cross_site_request")
        # The page's form, as the browser posts it from the page: reaches the route.
        same = {"Origin": "http://127.0.0.1:8002", "Sec-Fetch-Site": "same-origin"}
        r = c.post(url, data=form, headers=same, follow_redirects=False)
        assert r.status_code in (303, 403, 409), r.text  # the workflow's answer, not the guard's
        assert r.headers.get("content-type") != "application/json"


# -- listening beyond loopback ------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACGS_")}
    env.update({"ACGS_DATA_DIR": str(tmp_path / "data"), "ACGS_LOG_LEVEL": "warning"}, **extra)
    return env


def _acgs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv",
    [
        ("acgs", "serve", "--service", "audit", "--host", "0.0.0.0"),
        ("acgs", "serve", "--service", "policy", "--host", "::"),
        ("acgs", "serve", "--service", "policy", "--host", "0.0.0.0", "--workers", "2"),
        ("acgs.services.audit", "--host", "0.0.0.0"),
    ],
    ids=["serve-audit", "serve-policy-ipv6", "serve-policy-workers", "module"],
)
def test_without_auth_a_non_loopback_address_refuses_to_start(tmp_path: Path, argv: tuple[str, ...]) -> None:
    port = free_port()
    result = _acgs(*argv, "--port", str(port), env=_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "--insecure" in result.stderr and "ACGS_INSECURE" in result.stderr and "authentication" in result.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_acgs_serve_refuses_a_configured_non_loopback_address(tmp_path: Path) -> None:
    config = tmp_path / "acgs.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[evolution]\nhost = "10.0.0.5"\n')
    result = _acgs("acgs", "--config", str(config), "serve", env=_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "evolution on 10.0.0.5:8002" in result.stderr and "--insecure" in result.stderr


def _serve_until_healthy(argv: list[str], env: dict[str, str], port: int) -> str:
    """Starts ``argv``, waits for /health on loopback, stops it; returns its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    return stderr


def test_insecure_starts_and_says_what_it_means(tmp_path: Path) -> None:
    port = free_port()
    argv = ["acgs", "serve", "--service", "audit", "--host", "0.0.0.0", "--port", str(port), "--insecure"]
    stderr = _serve_until_healthy(argv, _env(tmp_path), port)
    assert re.search(r"INSECURE.*audit on 0\.0\.0\.0:\d+.*trusted with every claim", stderr), stderr
    # The same through the configuration's variable.
    stderr = _serve_until_healthy(argv[:-1], _env(tmp_path, ACGS_INSECURE="true"), port)
    assert "INSECURE" in stderr


def test_with_auth_on_any_address_is_allowed(tmp_path: Path) -> None:
    port = free_port()
    argv = ["acgs", "serve", "--service", "audit", "--host", "0.0.0.0", "--port", str(port)]
    stderr = _serve_until_healthy(argv, _env(tmp_path, ACGS_AUTH="true"), port)
    assert "INSECURE" not in stderr


# -- a slow evaluation and the other services ---------------------------------------------------


def _in_flight(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.search(r'^acgs_http_requests_in_flight\{service="policy"\} (\S+)$', text, re.M)
    assert found, "the policy service exports no in-flight gauge"
    return int(float(found.group(1)))


def test_a_slow_evaluation_does_not_stall_the_other_services(tmp_path: Path) -> None:
    """`stress/spin` runs until the policy's deadline. While it runs, the policy service itself
    answers (its /metrics shows the spin in flight) and so do the three other services of the
    same process; only then does the spin end, denied by its deadline."""
    problem = host_problem()
    if problem:
        skip_or_fail(problem)
    data, runs = make_dirs()
    ports = {name: free_port() for name in ("policy", "evolution", "audit", "sandbox")}
    lines = [f'data_dir = "{data}"', 'log_level = "warning"']
    for name, port in ports.items():
        lines += [f"[{name}]", f"port = {port}"]
        if name == "policy":
            lines += [f'bundle = "{STRESS}"', "timeout_ms = 15000", 'decision_log = "off"']
        if name == "sandbox":
            lines += [f'runs_dir = "{runs}"', 'cgroup_parent = "acgs-sandbox-test"']
    config = data / "acgs.toml"
    config.write_text("\n".join(lines) + "\n")
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acgs", "--config", str(config), "serve"],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        for url in urls.values():
            while True:
                assert proc.poll() is None, proc.communicate()[1]
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "acgs serve did not start"
                time.sleep(0.1)
        spin = {"input": {"items": list(range(3000)), "stop": -1}}
        with ThreadPoolExecutor(1) as pool:
            slow: Future[httpx.Response] = pool.submit(
                httpx.post, f"{urls['policy']}/v1/data/stress/spin", json=spin, timeout=120
            )
            # The spin is in flight when the policy service answers with two requests in flight:
            # the spin and this scrape. With the evaluation on the event loop, the scrape waits
            # until the spin is over and never sees it.
            while _in_flight(urls["policy"]) < 2:
                assert not slow.done(), "the policy service could not answer while it evaluated"
            for name in ("evolution", "audit", "sandbox"):
                assert httpx.get(f"{urls[name]}/health", timeout=60).status_code in (200, 503), name
            assert not slow.done(), "the other services answered only after the slow evaluation"
            r = slow.result()
        assert r.status_code >= 500 and "timeout" in r.text, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
