"""deploy/ checked without Docker: the compose file's services, ports, volumes, dependencies
and ``ACGS_*`` settings, alone and with each override (LDAP, single sign-on, secrets);
Prometheus's scrape targets and mounts; the alert rules through ``promtool``; Alertmanager's
routes; Grafana's provisioning; the Keycloak realm against the evolution service's settings; the
OpenBao seed against the references; and the OpenLDAP container's entrypoint, run against
Debian's slapd. (That every metric the rules and the dashboard name is exported is checked
against the running services in tests/services/test_observability.py.)"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from acgs.security import ldap as ldap_auth
from acgs.security.bind import check_bind
from acgs.security.cli import OPERATOR_ENV, OPERATOR_PASSWORD_FILE_ENV
from acgs.security.oidc import ENV_NAMES as OIDC_ENV
from acgs.security.oidc import OidcSettings
from acgs.security.secrets import ENV_NAMES as SECRETS_ENV
from acgs.security.secrets import SecretsSettings, parse_reference
from acgs.security.settings import ENV_NAMES as SECURITY_ENV
from acgs.security.settings import SecuritySettings
from acgs.services.audit.settings import ENV_NAMES as AUDIT_ENV
from acgs.services.audit.settings import AuditSettings
from acgs.services.common.observability.settings import ENV_NAMES as OBSERVABILITY_ENV
from acgs.services.common.observability.settings import ObservabilitySettings
from acgs.services.evolution.settings import ENV_NAMES as EVOLUTION_ENV
from acgs.services.evolution.settings import EvolutionSettings
from acgs.services.policy.settings import ENV_NAMES as POLICY_ENV
from acgs.services.policy.settings import PolicySettings
from acgs.services.sandbox.settings import ENV_NAMES as SANDBOX_ENV
from acgs.services.sandbox.settings import SandboxSettings
from tests.services.procs import free_port, spawn, stop, wait_until

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
REPO = DEPLOY.parent

#: The ACGS services, their ports (DESIGN.md) and the settings that read their environment.
ACGS: dict[str, tuple[int, Callable[..., Any], Mapping[str, str]]] = {
    "policy": (8004, PolicySettings.from_env, POLICY_ENV),
    "evolution": (8002, EvolutionSettings.from_env, EVOLUTION_ENV),
    "audit": (8003, AuditSettings.from_env, AUDIT_ENV),
    "sandbox": (8001, SandboxSettings.from_env, SANDBOX_ENV),
}
#: The rest of the seed's stack and the port each listens on inside the network.
BACKING = {
    "postgres": 5432,
    "redis": 6379,
    "redpanda": 9092,
    "minio": 9000,
    "prometheus": 9090,
    "grafana": 3000,
    "alertmanager": 9093,
}
KNOWN_ACGS_VARS = {
    *POLICY_ENV.values(),
    *EVOLUTION_ENV.values(),
    *AUDIT_ENV.values(),
    *SANDBOX_ENV.values(),
    *OBSERVABILITY_ENV.values(),
    *SECURITY_ENV.values(),
    *OIDC_ENV.values(),
    *ldap_auth.ENV_NAMES.values(),
    ldap_auth.OPERATOR_AUTH_ENV,
    OPERATOR_ENV,
    OPERATOR_PASSWORD_FILE_ENV,
    *SECRETS_ENV.values(),
}
#: The stacks: the compose file alone, and with each override file (``docker compose -f
#: docker-compose.yml -f <override>``).
OVERRIDES = {
    "ldap": "docker-compose.ldap.yml",
    "sso": "docker-compose.sso.yml",
    "secrets": "docker-compose.secrets.yml",
}
STACKS: dict[str, tuple[str, ...]] = {
    "base": (),
    **{name: (override,) for name, override in OVERRIDES.items()},
    "all": tuple(OVERRIDES.values()),
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of a service: mappings merge key by key, volumes by their target path,
    ports and secrets add up, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if key in ("environment", "depends_on", "healthcheck", "build") and isinstance(value, dict):
            out[key] = {**(base.get(key) or {}), **value}
        elif key == "volumes":
            merged = {str(spec).split(":")[1]: spec for spec in base.get(key, [])}
            merged.update({str(spec).split(":")[1]: spec for spec in value})
            out[key] = list(merged.values())
        elif key in ("ports", "secrets"):
            out[key] = [*base.get(key, []), *(v for v in value if v not in base.get(key, []))]
        else:
            out[key] = value
    return out


def _stack(overrides: tuple[str, ...]) -> dict[str, Any]:
    """The compose file merged with ``overrides`` in order, as ``docker compose -f ... -f ...``."""
    merged: dict[str, Any] = _yaml(DEPLOY / "docker-compose.yml")
    for override in overrides:
        extra = _yaml(DEPLOY / override)
        services = dict(merged["services"])
        for name, service in extra["services"].items():
            services[name] = _merge_service(services[name], service) if name in services else service
        merged = {**merged, "services": services}
        for key in ("volumes", "secrets"):
            if extra.get(key) or merged.get(key):
                merged[key] = {**(merged.get(key) or {}), **(extra.get(key) or {})}
    return merged


@pytest.fixture(scope="module", params=list(STACKS), ids=list(STACKS))
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _stack(STACKS[request.param])


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose["services"]
    return out


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _ports(service: dict[str, Any]) -> list[tuple[int, int]]:
    return [(host, container) for _, host, container in _published(service)]


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port); the address is "" when all interfaces."""
    out = []
    for spec in service.get("ports", []):
        rest, _, container = str(spec).rpartition(":")
        address, _, host = rest.rpartition(":")
        out.append((address, int(host), int(container)))
    return out


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        out.append((source, target))
    return out


def test_every_service_of_the_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(ACGS) | set(BACKING) <= set(services)
    for name, service in services.items():
        assert service.get("image"), f"{name} has no image"


def test_the_acgs_services_share_one_image_built_from_deploy(services: dict[str, dict[str, Any]]) -> None:
    images = {services[name]["image"] for name in ACGS}
    assert len(images) == 1
    for name in ACGS:
        build = services[name]["build"]
        assert (DEPLOY / build["context"]).resolve() == REPO
        assert (REPO / build["dockerfile"]).is_file()
        command = services[name]["command"]
        assert command == [f"acgs.services.{name}"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile and "maturin build" in dockerfile


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    published = [host for service in services.values() for host, _ in _ports(service)]
    assert len(published) == len(set(published)), "a host port is published twice"
    for name, (port, _, _) in ACGS.items():
        assert (port, port) in _ports(services[name]), f"{name} must publish {port}"
        # Without authentication, on the host's loopback only.
        assert all(address == "127.0.0.1" for address, _, _ in _published(services[name])), name
    for name, port in BACKING.items():
        containers = {c for _, c in _ports(services[name])}
        if name == "redpanda":
            # The broker's internal listener stays inside the network; 19092 is for the host.
            assert 19092 in containers
            assert f"0.0.0.0:{port}" in " ".join(services[name]["command"])
        else:
            assert port in containers, f"{name} must publish {port}"


def test_volumes_are_declared_and_mounted(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        targets = [t for _, t in _mounts(service)]
        assert len(targets) == len(set(targets)), f"{name} mounts two things at one path"
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but never mounted: {declared - used}"
    # Every stateful service keeps its state on a named volume.
    stateful = {
        "postgres": "/var/lib/postgresql/data",
        "redis": "/data",
        "redpanda": "/var/lib/redpanda/data",
        "minio": "/data",
        "prometheus": "/prometheus",
        "grafana": "/var/lib/grafana",
        "alertmanager": "/alertmanager",
        **{name: "/var/lib/acgs" for name in ACGS},
    }
    if "openldap" in services:
        stateful["openldap"] = "/var/lib/ldap"
    for name, path in stateful.items():
        assert any(t == path and s in declared for s, t in _mounts(services[name])), f"{name}: no volume at {path}"


def test_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert target in services and target != name, f"{name} depends on unknown {target}"
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot job"
    # What each service is configured to reach, it waits for.
    assert {"redis", "audit"} <= set(services["policy"]["depends_on"])
    assert {"postgres", "redpanda", "minio-buckets"} <= set(services["audit"]["depends_on"])
    assert {"postgres", "audit"} <= set(services["evolution"]["depends_on"])
    assert "audit" in services["sandbox"]["depends_on"]


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    for name, (port, _, _) in ACGS.items():
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/health" in test


def test_acgs_environment_is_real_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        env = _env(service)
        unknown = sorted(k for k in env if k.startswith("ACGS_") and k not in KNOWN_ACGS_VARS)
        assert not unknown, f"{name} sets variables no ACGS settings read: {unknown}"
    for name, (port, from_env, names) in ACGS.items():
        env = _env(services[name])
        settings = from_env(env)  # raises ValueError naming any malformed variable
        assert settings.host == "0.0.0.0" and settings.port == port
        # Listening on all interfaces without authentication is said explicitly, or refused.
        security = SecuritySettings.from_env(env)
        check_bind([(name, settings.host, settings.port)], security)
        assert security.auth or security.insecure
        assert {"policy", "evolution", "audit", "sandbox"} <= set(security.allowed_hosts), name
        ObservabilitySettings.from_env(env)
        SecretsSettings.from_env(env)
        if env.get("ACGS_OIDC_ISSUER"):
            # Sign-on needs authentication on (the service refuses to start otherwise).
            assert OidcSettings.from_env(env).enabled and security.auth, name
        if ldap_auth.operator_auth(env) == "ldap":
            # The CA file is on a volume the directory fills: checked to be mounted, not present.
            ldap_settings = ldap_auth.LdapSettings.from_env(env, ca_file=None)
            ca_file = env["ACGS_LDAP_CA_FILE"]
            (source,) = [s for s, target in _mounts(services[name]) if ca_file.startswith(f"{target}/")]
            # ... the volume where the directory's entrypoint puts its CA certificate (LDAP_CA_DIR).
            assert (source, "/etc/ldap/ca") in _mounts(services["openldap"]), name
            assert f"{source}:{Path(ca_file).parent}:ro" in services[name]["volumes"], name
            assert ldap_settings.endpoint == ("ldaps", "openldap", 636)
        assert env["ACGS_DATA_DIR"] == "/var/lib/acgs" and env["ACGS_LOG_FORMAT"] == "json"
        own = [k for k in env if k.startswith(f"ACGS_{name.upper()}_")]
        assert own and set(own) <= set(names.values())
    policy = PolicySettings.from_env(_env(services["policy"]))
    assert policy.redis_url == "redis://redis:6379/0" and policy.decision_log == "http://audit:8003"
    audit = AuditSettings.from_env(_env(services["audit"]))
    assert audit.database_url is not None and "@postgres:5432/" in audit.database_url
    assert audit.kafka_bootstrap == "redpanda:9092" and audit.archive_endpoint == "http://minio:9000"
    assert audit.archive is not None and audit.archive.startswith("s3://acgs-audit/")
    evolution = EvolutionSettings.from_env(_env(services["evolution"]))
    assert evolution.database_url is not None and "@postgres:5432/" in evolution.database_url
    # Every decision, change request and execution lands in the one audit log.
    assert evolution.audit_url == "http://audit:8003"
    assert SandboxSettings.from_env(_env(services["sandbox"])).audit_url == "http://audit:8003"
    # The databases the services name exist: the image's own and the one init.sql creates.
    pg = _env(services["postgres"])
    init = (DEPLOY / "postgres" / "init.sql").read_text()
    for url in (audit.database_url, evolution.database_url):
        db = url.rsplit("/", 1)[1]
        assert db == pg["POSTGRES_DB"] or f"CREATE DATABASE {db} " in init
        match = re.match(r"postgresql://([^:]+):\{([^{}]+)\}@", url)
        if match is None:
            assert url.startswith(f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@")
            continue
        # The password is a reference: the one-shot seed job stores PostgreSQL's password there.
        ref = parse_reference(match[2])
        assert ref is not None and ref.scheme == "vault" and match[1] == pg["POSTGRES_USER"]
        assert _seeded(services)[(ref.mount, ref.path, ref.field)] == pg["POSTGRES_PASSWORD"]


def _seeded(services: dict[str, dict[str, Any]]) -> dict[tuple[str, str, str | None], str]:
    """(mount, path, field) -> value for each ``bao kv put -mount=M PATH FIELD=VALUE`` of the
    seed job."""
    out: dict[tuple[str, str, str | None], str] = {}
    for command in " ".join(services["openbao-seed"]["command"]).split("&&"):
        words = shlex.split(command)
        if words[:3] != ["bao", "kv", "put"]:
            continue
        mount = next(w.removeprefix("-mount=") for w in words if w.startswith("-mount="))
        path, *fields = [w for w in words[3:] if not w.startswith("-")]
        for field in fields:
            key, _, value = field.partition("=")
            out[(mount, path, key)] = value
    return out


def test_prometheus_scrapes_every_service(services: dict[str, dict[str, Any]]) -> None:
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, (port, _, _) in ACGS.items():
        job = jobs[f"acgs-{name}"]
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == [f"{name}:{port}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job["static_configs"][0]["labels"]["service"] == name
        assert job["honor_labels"] is True
    alertmanagers = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert alertmanagers == [f"alertmanager:{BACKING['alertmanager']}"]
    # The rule file Prometheus loads is the one mounted next to its config.
    mounts = dict(_mounts(services["prometheus"]))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    for rule_file in config["rule_files"]:
        assert mounts[f"./prometheus/{rule_file}"] == f"/etc/prometheus/{rule_file}"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (scripts/setup.sh installs Debian's prometheus package for it)")
    return found


def _run(*args: str) -> str:
    done = subprocess.run(args, cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_alert_rules_pass_promtool() -> None:
    promtool = _promtool()
    assert "SUCCESS" in _run(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS" in _run(promtool, "check", "config", "prometheus.yml")
    # Unit tests of the rules: each watched failure fires its alert, and quiet series do not.
    assert "SUCCESS" in _run(promtool, "test", "rules", "alerts_test.yml")


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    promtool = _promtool()
    broken = (DEPLOY / "prometheus" / "alerts.yml").read_text().replace("increase(acgs_audit_verify_failures_total[15m])", "increase(acgs_audit_verify_failures_total[15m]")
    (tmp_path / "alerts.yml").write_text(broken)
    done = subprocess.run([promtool, "check", "rules", str(tmp_path / "alerts.yml")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


def test_alert_rules_cover_the_brief() -> None:
    rules = {r["alert"]: r for g in _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]}
    for alert in (
        "ACGSServiceDown",
        "ACGSDecisionLatencySLO",
        "ACGSAuditChainVerificationFailed",
        "ACGSSandboxSyscallViolations",
        "ACGSSandboxSeccompKill",
        "ACGSDecisionLogsDropped",
    ):
        assert alert in rules
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_alertmanager_routes_every_severity() -> None:
    config = _yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    receivers = {r["name"] for r in config["receivers"]}
    route = config["route"]
    assert route["receiver"] in receivers
    assert all(sub["receiver"] in receivers for sub in route.get("routes", []))
    assert any('severity="critical"' in m for sub in route["routes"] for m in sub["matchers"])


def test_grafana_provisioning(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(_mounts(services["grafana"]))
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = _yaml(provisioning / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == f"http://prometheus:{BACKING['prometheus']}"
    provider = _yaml(provisioning / "dashboards" / "acgs.yml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    dashboards = list((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


# -- people and secrets (docs/security.md) -------------------------------------------------


def test_the_image_carries_the_extras_of_people_and_secrets() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installed = re.search(r"acgs-\*\.whl\)\[([a-z0-9,-]+)\]", dockerfile)
    assert installed is not None
    extras = set(installed[1].split(","))
    assert {"sso", "ldap", "vault"} <= extras
    pyproject = (REPO / "pyproject.toml").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} = \[", pyproject, re.M), f"pyproject.toml has no extra {extra}"


@pytest.mark.parametrize("override", list(OVERRIDES.values()))
def test_overrides_add_to_the_stack_without_replacing_it(override: str) -> None:
    base = _yaml(DEPLOY / "docker-compose.yml")["services"]
    extra = _yaml(DEPLOY / override)
    assert set(extra) <= {"services", "volumes", "secrets"} | {k for k in extra if k.startswith("x-")}
    for name, service in extra["services"].items():
        if name in base:
            # Only what the feature needs is added to an existing service: never its image,
            # command, ports or user.
            assert set(service) <= {"environment", "volumes", "secrets", "depends_on"}, f"{override}: {name}"
        else:
            assert service.get("image"), f"{override}: {name} has no image"
    header = (DEPLOY / override).read_text().split("\n\n", 1)[0]
    assert f"-f deploy/{override}" in header and "Not run here" in (DEPLOY / override).read_text()
    # The README says how to use it.
    assert override in (DEPLOY / "README.md").read_text()


def test_the_keycloak_realm_fits_the_evolution_service() -> None:
    services = _stack(STACKS["sso"])["services"]
    env = _env(services["evolution"])
    oidc = OidcSettings.from_env(env)
    realm = json.loads((DEPLOY / "keycloak" / "acgs-realm.json").read_text())
    keycloak = _env(services["keycloak"])
    # The issuer is Keycloak's front-end URL (what browsers use) with the realm.
    assert oidc.issuer == f"{keycloak['KC_HOSTNAME']}/realms/{realm['realm']}"
    assert urllib.parse.urlsplit(oidc.metadata_url).netloc == "keycloak:8080"
    (client,) = [c for c in realm["clients"] if c["clientId"] == oidc.client_id]
    assert client["publicClient"] is False and client["standardFlowEnabled"] is True
    assert client["implicitFlowEnabled"] is False and client["directAccessGrantsEnabled"] is False
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert client["redirectUris"] == [oidc.callback_url]
    # The secret file the service reads is the realm's client secret.
    secret_file = _stack(STACKS["sso"])["secrets"]["oidc-client-secret"]["file"]
    assert (DEPLOY / secret_file).read_text().strip() == client["secret"]
    assert str(oidc.client_secret_file) == "/run/secrets/oidc-client-secret"
    # The groups reach the ID token under the claim ACGS reads, and the mapped groups exist.
    (mapper,) = [m for m in client["protocolMappers"] if m["protocolMapper"] == "oidc-group-membership-mapper"]
    assert mapper["config"]["claim.name"] == oidc.groups_claim and mapper["config"]["id.token.claim"] == "true"
    assert mapper["config"]["full.path"] == "false"
    groups = {g["name"] for g in realm["groups"]}
    assert set(oidc.role_map) <= groups
    assert oidc.roles_for(["acgs-reviewers"]) == {"reviewer"}
    for user in realm["users"]:
        assert all(g.lstrip("/") in groups for g in user["groups"])
        assert all(c["temporary"] for c in user["credentials"])
    # The volume and the evolution service wait for Keycloak to be ready.
    assert dict(_mounts(services["keycloak"]))["./keycloak/acgs-realm.json"].startswith("/opt/keycloak/data/import/")
    assert services["evolution"]["depends_on"]["keycloak"]["condition"] == "service_healthy"


def test_the_openldap_entrypoint_seeds_a_directory_the_operators_settings_work_with() -> None:
    """deploy/openldap/entrypoint.sh run as it is, on this machine's Debian slapd: the first
    start makes the certificate and loads config.ldif and seed.ldif; the ACGS containers'
    ACGS_LDAP_* settings then authenticate the seeded operator as admin over LDAPS, and refuse
    a wrong password; a second start keeps the directory."""
    tools = ("slapd", "slapadd", "slapcat", "slappasswd", "openssl", "ldapsearch")
    missing = [b for b in tools if not (shutil.which(b) or Path(f"/usr/sbin/{b}").exists())]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages slapd, ldap-utils, openssl; scripts/setup.sh installs them)")
    root = Path(tempfile.mkdtemp(prefix="acgs-deploy-ldap-"))
    root.chmod(0o755)  # slapd drops to the openldap user when run as root
    port = free_port()
    ldapi = f"ldapi://{urllib.parse.quote(str(root / 'run' / 'ldapi'), safe='')}"
    password = "operator-Pw-9"
    env = {
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin:/bin",
        "LDAP_SEED_DIR": str(DEPLOY / "openldap"),
        "LDAP_CONFIG_DIR": str(root / "slapd.d"),
        "LDAP_DATA_DIR": str(root / "data"),
        "LDAP_TLS_DIR": str(root / "tls"),
        "LDAP_CA_DIR": str(root / "ca"),
        "LDAP_RUN_DIR": str(root / "run"),
        "LDAP_URLS": f"ldaps://127.0.0.1:{port}/ {ldapi}",
        "LDAP_OPERATOR_PASSWORD": password,
    }
    entrypoint = (DEPLOY / "openldap" / "entrypoint.sh").read_text()
    image = (DEPLOY / "openldap" / "Dockerfile").read_text()
    assert "COPY config.ldif seed.ldif /etc/ldap/acgs/" in image and "SEED_DIR=${LDAP_SEED_DIR:-/etc/ldap/acgs}" in entrypoint
    assert os.access(DEPLOY / "openldap" / "entrypoint.sh", os.X_OK)
    assert "CA_DIR=${LDAP_CA_DIR:-/etc/ldap/ca}" in entrypoint and "DATA_DIR=${LDAP_DATA_DIR:-/var/lib/ldap}" in entrypoint
    compose_env = _env(_stack(STACKS["ldap"])["services"]["policy"])
    acgs_env = {**compose_env, "ACGS_LDAP_URL": f"ldaps://127.0.0.1:{port}", "ACGS_LDAP_CA_FILE": str(root / "ca" / "ca.pem")}
    health = _stack(STACKS["ldap"])["services"]["openldap"]["healthcheck"]["test"][1:]
    health = [ldapi if arg == "ldapi:///" else arg for arg in health]

    log = root / "entrypoint.log"

    def start() -> subprocess.Popen[bytes]:
        proc = spawn(["sh", str(DEPLOY / "openldap" / "entrypoint.sh")], log, env=env)
        try:
            # The compose file's health check, against this socket.
            wait_until(
                lambda: subprocess.run(health, env=env, capture_output=True, timeout=10).returncode == 0,
                what="slapd",
                timeout=30,
                runner=proc,
                log=log,
                interval=0.1,
                state="healthy",
            )
        except BaseException:
            stop(proc)
            raise
        return proc

    try:
        for attempt in ("first start", "restart"):
            proc = start()
            try:
                directory = ldap_auth.Directory(ldap_auth.LdapSettings.from_env(acgs_env))
                operator = directory.authenticate("operator", password)
                assert operator.has("admin"), attempt
                assert operator.by == "ldap:uid=operator,ou=people,dc=acgs,dc=local"
                with pytest.raises(ldap_auth.InvalidCredentials):
                    directory.authenticate("operator", "not-the-password")
                with pytest.raises(ldap_auth.InvalidCredentials):
                    directory.authenticate("nobody", password)
            finally:
                stop(proc)
        # The volume the ACGS containers mount holds the CA certificate only; the keys stay with
        # the directory (the CA's is gone).
        assert sorted(p.name for p in (root / "ca").iterdir()) == ["ca.pem"]
        assert (root / "tls" / "server.key").stat().st_mode & 0o077 == 0
        assert not list(root.rglob("ca.key"))
        # The password is stored hashed.
        seeded = subprocess.run(
            ["slapcat", "-n", "1", "-F", env["LDAP_CONFIG_DIR"], "-a", "(uid=operator)"], env=env, capture_output=True, text=True
        )
        assert seeded.returncode == 0 and password not in seeded.stdout and "userPassword:: " in seeded.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)
