"""A real OpenID Connect provider for tests: the ``oidc-provider`` package from npm under Node,
started on a free loopback port (``tests/services/oidc_provider``).

The node project's dependencies are installed once with ``npm ci`` from its committed lock into
``~/.cache/acgs/oidc-provider/<hash of the lock>`` (outside the clone; ``ACGS_CACHE_DIR``
moves it), so a fresh clone installs them on first use and never again. Each provider gets RSA
keys generated for it (``rotate`` adds a new signing key and keeps the old one published, as a
provider rotating its keys does), one confidential client and seeded users:

- ``rita`` in ``acgs-reviewers`` (mapped to the reviewer role by the tests),
- ``rory`` in ``acgs-reviewers`` as well (a second reviewer),
- ``audrey`` in ``acgs-auditors`` (auditor: may read the page, not decide),
- ``oscar`` in ``staff`` only (a group no mapping knows).

Without ``node``/``npm`` the tests that need the provider fail rather than pass untested.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.services.conftest import ServerThread
from tests.services.procs import answers_200, free_port, running, spawn, stop, wait_until

PROJECT = Path(__file__).parent / "oidc_provider"
CLIENT_ID = "acgs-evolution"
REVIEWERS = "acgs-reviewers"
AUDITORS = "acgs-auditors"
#: Group -> roles, as ``ACGS_OIDC_ROLE_MAP`` would say it.
ROLE_MAP = f"{REVIEWERS}=reviewer;{AUDITORS}=auditor"


@dataclass(frozen=True)
class User:
    login: str
    password: str
    name: str
    groups: tuple[str, ...]


def _users() -> dict[str, User]:
    seeds = {
        "rita": ("Rita Reviewer", (REVIEWERS,)),
        "rory": ("Rory Reviewer", (REVIEWERS, "staff")),
        "audrey": ("Audrey Auditor", (AUDITORS,)),
        "oscar": ("Oscar Outsider", ("staff",)),
    }
    return {login: User(login, secrets.token_urlsafe(12), name, groups) for login, (name, groups) in seeds.items()}


def _cache_root() -> Path:
    base = os.environ.get("ACGS_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "acgs")
    return Path(base) / "oidc-provider"


def installed_project() -> Path:
    """The node project with its dependencies installed (``npm ci``, once per lock)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the OIDC provider (scripts/setup.sh installs nodejs and npm)")
    lock = (PROJECT / "package-lock.json").read_bytes()
    target = _cache_root() / hashlib.sha256(lock).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    done = target / ".installed"
    with open(target / ".lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # one npm ci at a time (pytest-xdist workers)
        if not done.exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(PROJECT / name, target / name)
            result = subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if result.returncode != 0:
                pytest.fail(f"npm ci of the OIDC provider failed:\n{result.stdout}\n{result.stderr}")
            done.write_text("ok\n")
        # The script is copied each time: ESM resolves imports next to the script, and edits count.
        shutil.copyfile(PROJECT / "provider.mjs", target / "provider.mjs")
    return target


def new_key() -> dict[str, Any]:
    """A private RSA signing key as a JWK, with a key id of its own."""
    key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"})
    return dict(key.as_dict(private=True))


@dataclass
class OidcProvider:
    """One running provider. ``issuer`` is ``http://localhost:PORT`` (it listens on 127.0.0.1)."""

    project: Path
    redirect_uris: list[str]
    users: dict[str, User] = field(default_factory=_users)
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    keys: list[dict[str, Any]] = field(default_factory=lambda: [new_key()])
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="acgs-oidc-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        # "localhost", while ACGS is reached as 127.0.0.1: another site to the browser, as a
        # real provider is (SameSite rules then apply to the redirects as in production).
        return f"http://localhost:{self.port}"

    @property
    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [RSAKey.import_key(k).as_dict(private=False) | {"kid": k["kid"]} for k in self.keys]}

    def write_client_secret(self, path: Path) -> Path:
        path.write_text(self.client_secret + "\n")
        return path

    def _config(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "issuer": self.issuer,
            "keys": self.keys,
            "cookie_keys": [secrets.token_urlsafe(24)],
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": self.client_secret,
                    "redirect_uris": self.redirect_uris,
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                }
            ],
            "users": {u.login: {"password": u.password, "name": u.name, "groups": list(u.groups)} for u in self.users.values()},
        }

    def start(self) -> None:
        config = self.workdir / "config.json"
        config.write_text(json.dumps(self._config()))
        config.chmod(0o600)
        self.log = self.workdir / "provider.log"
        self.proc = spawn(
            [shutil.which("node") or "node", str(self.project / "provider.mjs"), str(config)],
            self.log,
            cwd=self.project,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ENV": "test"},
        )
        ready = answers_200(f"{self.issuer}/.well-known/openid-configuration")
        wait_until(ready, what="the OIDC provider", timeout=30, runner=self.proc, log=self.log)

    def stop(self) -> None:
        stop(self.proc, grace=10)
        self.proc = None

    def rotate(self) -> dict[str, Any]:
        """Restarts the provider signing with a new key (the old one stays published); returns
        the new key."""
        key = new_key()
        self.keys = [key, *self.keys]
        self.stop()
        self.start()
        return key

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def running_provider(redirect_uris: list[str]) -> Iterator[OidcProvider]:
    provider = OidcProvider(installed_project(), redirect_uris)
    with running(provider, "the OIDC provider", cleanup=provider.close):
        yield provider


_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def sign_in(client: httpx.Client, base_url: str, user: User, *, next_path: str = "/evolution/review") -> httpx.Response:
    """Signs ``user`` in as a browser would, without one: ACGS's /auth/login, the provider's
    login form, and back to ACGS's callback. Returns the callback's answer (a 303 to
    ``next_path`` when the sign-in succeeded); ``client`` keeps the cookies of both sides."""
    answer = client.get(f"{base_url}/auth/login", params={"next": next_path}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    page = client.get(answer.headers["location"], follow_redirects=True)
    action = _FORM_ACTION.search(page.text)
    assert action is not None, page.text
    return submit_login(client, str(page.url.join(action.group(1))), user)


def submit_login(client: httpx.Client, action: str, user: User) -> httpx.Response:
    """Posts the provider's login form and follows the provider's redirects up to ACGS's
    callback, whose answer is returned."""
    answer = client.post(action, data={"login": user.login, "password": user.password}, follow_redirects=False)
    while answer.status_code in (302, 303) and "/auth/callback" not in answer.headers["location"]:
        answer = client.get(str(answer.url.join(answer.headers["location"])), follow_redirects=False)
    if answer.status_code in (302, 303):
        answer = client.get(answer.headers["location"], follow_redirects=False)
    return answer


def callback_url(client: httpx.Client, base_url: str, user: User) -> tuple[str, httpx.Response]:
    """Goes through the provider's login up to (not into) ACGS's callback; returns the callback
    URL the provider sent the browser to (code and state) and ACGS's /auth/login answer."""
    answer = client.get(f"{base_url}/auth/login", follow_redirects=False)
    page = client.get(answer.headers["location"], follow_redirects=True)
    action = _FORM_ACTION.search(page.text)
    assert action is not None, page.text
    step = client.post(
        str(page.url.join(action.group(1))), data={"login": user.login, "password": user.password}, follow_redirects=False
    )
    while "/auth/callback" not in step.headers.get("location", ""):
        assert step.status_code in (302, 303), step.text
        step = client.get(str(step.url.join(step.headers["location"])), follow_redirects=False)
    return step.headers["location"], answer


# -- the evolution service with sign-in, for the tests ------------------------------------------

#: A fast-track change (one reviewer) submitted by the agent whose API key the service made.
AGENT = "agent-7"
CONFIGURATION: dict[str, Any] = {
    "agent_id": AGENT,
    "type": "configuration",
    "changes": {"code_changes": ["config/limits.toml"], "lines_changed": 4},
    "rollback_plan": {"procedure": "restore the previous file", "steps": ["notify"], "tested": True, "automated": True},
}


@dataclass
class SignedInService:
    """The evolution service under uvicorn with authentication on and single sign-on through
    ``provider``; ``agent_token`` is an API key of the agent ``AGENT``."""

    base_url: str
    provider: OidcProvider
    data_dir: Path
    agent_token: str
    app: Any

    def submit(self) -> str:
        answer = httpx.post(
            f"{self.base_url}/evolution/request", json=CONFIGURATION, headers={"Authorization": f"Bearer {self.agent_token}"}
        )
        assert answer.status_code == 201, answer.text
        request_id: str = answer.json()["request_id"]
        return request_id

    def status_of(self, request_id: str) -> str:
        headers = {"Authorization": f"Bearer {self.agent_token}"}
        answer = httpx.get(f"{self.base_url}/evolution/requests/{request_id}", headers=headers)
        assert answer.status_code == 200, answer.text
        status: str = answer.json()["status"]
        return status


@contextlib.contextmanager
def evolution_with_sign_in(data_dir: Path, **oidc: Any) -> Iterator[SignedInService]:
    import asyncio

    from acgs.security import SecuritySettings, create_key, open_key_store
    from acgs.security.oidc import OidcSettings, parse_role_map
    from acgs.services.evolution import EvolutionSettings, create_app

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with running_provider([f"{base_url}/auth/callback"]) as provider:
        session_key = data_dir / "oidc-session.key"
        session_key.write_text(secrets.token_urlsafe(48))
        settings = OidcSettings(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret_file=provider.write_client_secret(data_dir / "oidc-client.secret"),
            redirect_base_url=base_url,
            role_map=parse_role_map(ROLE_MAP),
            session_secret_file=session_key,
            **oidc,
        )
        security = SecuritySettings(auth=True, data_dir=data_dir)
        _, token = asyncio.run(create_key(open_key_store(security.resolved_key_store()), AGENT, ["agent"]))
        database = f"sqlite:///{data_dir / 'evolution.sqlite3'}"
        evolution = EvolutionSettings(data_dir=data_dir, database_url=database, sweep_interval=3600.0)
        app = create_app(evolution, security=security, oidc=settings)
        with ServerThread(app, port):
            yield SignedInService(base_url, provider, data_dir, token, app)
