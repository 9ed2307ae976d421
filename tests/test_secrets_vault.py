"""The Vault backend of acgs.security.secrets against a real server: ``vault server -dev`` (or
OpenBao's ``bao server -dev``, the same KV v2 API) started on a loopback port with its own root
token. Skipped, with the reason, where neither binary is on PATH: neither installs on the
machine these tests were written on (the Go proxy refuses OpenBao's module; Vault's does not
build with ``go install``; no Debian package), and no mock stands in for the server."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services.conftest import free_port

hvac = pytest.importorskip("hvac", reason="the Vault backend needs hvac (pip install 'acgs[vault]')")

from acgs import _acgs as core  # noqa: E402 - after the skip
from acgs.audit import keys as audit_keys  # noqa: E402
from acgs.security.secrets import (  # noqa: E402
    SecretAccessDenied,
    SecretInvalid,
    SecretNotFound,
    SecretResolver,
    SecretsSettings,
    SecretUnavailable,
)
from acgs.services.audit import AuditSettings  # noqa: E402

BINARY = next((b for b in (shutil.which("vault"), shutil.which("bao")) if b), None)
pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="no vault or bao binary on PATH: the Vault backend is tested only against a real server "
    "(OpenBao's Go module is refused by the proxy, Vault does not build with go install here)",
)


@dataclass
class DevServer:
    addr: str
    root_token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, token: str | None = None) -> Any:
        return hvac.Client(url=self.addr, token=token or self.root_token)

    def settings(self, tmp_path: Path, token: str | None = None, **overrides: Any) -> SecretsSettings:
        token_file = tmp_path / f"vault-token-{secrets.token_hex(4)}"
        token_file.write_text((token or self.root_token) + "\n")
        values: dict[str, Any] = {"vault_addr": self.addr, "vault_token_file": token_file, "ttl": 0.0, "vault_timeout": 5.0}
        values.update(overrides)
        return SecretsSettings(**values)


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    assert BINARY is not None
    port = free_port()
    token = "root-" + secrets.token_hex(12)
    log = tmp_path_factory.mktemp("vault") / "server.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(log.parent)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [BINARY, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = DevServer(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{BINARY} server -dev exited:\n{log.read_text()[-2000:]}")
            try:
                if server.client().sys.is_initialized() and not server.client().sys.is_sealed():
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{BINARY} server -dev did not become ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        kv = server.client().secrets.kv.v2
        kv.create_or_update_secret(path="acgs/db", secret={"password": "pg-pw-1", "port": 5432}, mount_point="secret")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_reads_fields_and_follows_new_versions(vault: DevServer, tmp_path: Path) -> None:
    resolver = SecretResolver(vault.settings(tmp_path))
    assert resolver.resolve("vault:secret/acgs/db#password") == "pg-pw-1"
    vault.client().secrets.kv.v2.create_or_update_secret(
        path="acgs/db", secret={"password": "pg-pw-2", "port": 5432}, mount_point="secret"
    )
    assert resolver.resolve("vault:secret/acgs/db#password") == "pg-pw-2"  # TTL 0: the new version
    cached = SecretResolver(vault.settings(tmp_path, ttl=30.0))
    assert cached.resolve("vault:secret/acgs/db#password") == "pg-pw-2"
    vault.client().secrets.kv.v2.create_or_update_secret(
        path="acgs/db", secret={"password": "pg-pw-3", "port": 5432}, mount_point="secret"
    )
    assert cached.resolve("vault:secret/acgs/db#password") == "pg-pw-2"
    assert cached.resolve("vault:secret/acgs/db#password", fresh=True) == "pg-pw-3"


def test_faults_are_specific_and_name_the_reference(vault: DevServer, tmp_path: Path) -> None:
    resolver = SecretResolver(vault.settings(tmp_path))
    with pytest.raises(SecretNotFound, match=r"vault:secret/acgs/db#user: the secret has no field 'user'"):
        resolver.resolve("vault:secret/acgs/db#user")
    with pytest.raises(SecretNotFound, match="no such secret"):
        resolver.resolve("vault:secret/acgs/nothing-here#password")
    with pytest.raises(SecretInvalid, match="the field holds int, not a string"):
        resolver.resolve("vault:secret/acgs/db#port")
    with pytest.raises((SecretNotFound, SecretUnavailable, SecretAccessDenied)):
        resolver.resolve("vault:nomount/acgs/db#password")
    bad = SecretResolver(vault.settings(tmp_path, token="not-a-token"))
    with pytest.raises(SecretAccessDenied) as info:
        bad.resolve("vault:secret/acgs/db#password")
    assert "not-a-token" not in str(info.value)
    # A token whose policy reaches another path only.
    root = vault.client()
    root.sys.create_or_update_policy(name="acgs-other", policy='path "secret/data/other/*" { capabilities = ["read"] }')
    limited = root.auth.token.create(policies=["acgs-other"], ttl="10m")["auth"]["client_token"]
    with pytest.raises(SecretAccessDenied, match="403"):
        SecretResolver(vault.settings(tmp_path, token=limited)).resolve("vault:secret/acgs/db#password")
    # A deleted latest version is gone, not the version before it.
    root.secrets.kv.v2.create_or_update_secret(path="acgs/gone", secret={"v": "x"}, mount_point="secret")
    root.secrets.kv.v2.delete_latest_version_of_secret(path="acgs/gone", mount_point="secret")
    with pytest.raises(SecretNotFound):
        resolver.resolve("vault:secret/acgs/gone#v")


def test_audit_signing_key_and_database_url_from_vault(vault: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, verifier = core.generate_signing_key("vault.test/audit")
    vault.client().secrets.kv.v2.create_or_update_secret(
        path="acgs/audit", secret={"signing_key": private, "db_password": "p@ss/word"}, mount_point="secret"
    )
    token_file = tmp_path / "token"
    token_file.write_text(vault.root_token)
    monkeypatch.setenv("ACGS_VAULT_ADDR", vault.addr)
    monkeypatch.setenv("ACGS_VAULT_TOKEN_FILE", str(token_file))
    monkeypatch.setenv(audit_keys.ENV_KEY, "vault:secret/acgs/audit#signing_key")
    assert audit_keys.load_or_create(tmp_path / "data") == private
    assert audit_keys.pinned_verifier(None, tmp_path / "data")[0] == verifier
    settings = AuditSettings(database_url="postgresql://acgs:{vault:secret/acgs/audit#db_password}@db:5432/acgs")
    assert settings.resolved_database_url() == "postgresql://acgs:p%40ss%2Fword@db:5432/acgs"
    monkeypatch.setenv(audit_keys.ENV_KEY, "vault:secret/acgs/audit#missing")
    with pytest.raises(SecretNotFound):
        audit_keys.load_or_create(tmp_path / "data2")
    assert not (tmp_path / "data2" / audit_keys.KEY_FILE).exists()
