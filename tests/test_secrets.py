"""Secrets by reference (acgs.security.secrets): the reference forms, the file and environment
backends, the Vault backend's faults without a server, the TTL cache and rotation, the settings
that resolve references (database, Redis and key store URLs, JWT keys, the audit signing key,
the webhook secret), and that no secret ever shows in a message, a repr or public settings."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from acgs import _acgs as core
from acgs.audit import keys as audit_keys
from acgs.errors import SigningKeyError
from acgs.security.secrets import (
    EnvSecrets,
    FileSecrets,
    SecretAccessDenied,
    SecretError,
    SecretInvalid,
    SecretNotFound,
    SecretRef,
    SecretReferenceError,
    SecretResolver,
    SecretsSettings,
    SecretUnavailable,
    VaultSecrets,
    default_resolver,
    is_reference,
    parse_reference,
)
from acgs.security.settings import SecuritySettings
from acgs.security.tokens import JwtVerifier, TokenRejected
from acgs.services.audit import AuditSettings
from acgs.services.evolution import EvolutionSettings
from acgs.services.policy.settings import PolicySettings

SECRET = "s3cr3t-Value-that-must-never-be-printed"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leaks(exc: BaseException, secret: str = SECRET) -> bool:
    return secret in str(exc) or secret in repr(exc) or secret in repr(exc.args)


# -- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["s3cret", "", "postgresql://acgs:pw@db/acgs", "sqlite:///var/lib/acgs/a.db", "redis://r:6379/0", "FILE:/x", "vaults:x"],
)
def test_plain_values_are_not_references(text: str) -> None:
    assert parse_reference(text) is None
    assert not is_reference(text)
    assert SecretResolver().resolve(text) == text


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("file:/run/secrets/acgs", SecretRef("file", "/run/secrets/acgs")),
        ("env:ACGS_TEST_X", SecretRef("env", "ACGS_TEST_X")),
        ("vault:secret/acgs/audit#signing_key", SecretRef("vault", "secret/acgs/audit", "signing_key")),
        ("vault:kv/a.b-c/d_e#password", SecretRef("vault", "kv/a.b-c/d_e", "password")),
    ],
)
def test_references_parse_and_print_back(text: str, want: SecretRef) -> None:
    ref = parse_reference(text)
    assert ref == want and str(ref) == text
    if ref is not None and ref.scheme == "vault":
        assert (ref.mount, ref.path) == (text[6:].split("/", 1)[0], text[6:].split("/", 1)[1].split("#")[0])


@pytest.mark.parametrize(
    "text",
    [
        "file:relative/path",
        "file:",
        "file:/x ",
        "env:",
        "env:1BAD",
        "env:A-B",
        "vault:secret#field",
        "vault:secret/acgs",
        "vault:secret/acgs#",
        "vault:secret/../sys/x#f",
        "vault:secret//x#f",
        "vault:/secret/x#f",
        "vault:secret/x y#f",
        "vault:secret/x#f\n",
    ],
)
def test_malformed_references_are_refused_not_taken_as_values(text: str) -> None:
    with pytest.raises(SecretReferenceError) as info:
        parse_reference(text)
    assert info.value.code == "invalid_secret_reference"
    with pytest.raises(SecretReferenceError):
        SecretResolver().resolve(text)


# -- file and environment backends ----------------------------------------------------------------


def test_file_backend_reads_strips_and_refuses_what_is_not_a_secret(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text(f"  {SECRET}\n")
    assert FileSecrets().read(SecretRef("file", str(good))) == SECRET

    cases: list[tuple[Path, type[SecretError]]] = []
    empty = tmp_path / "empty"
    empty.write_text("\n \n")
    cases.append((empty, SecretInvalid))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    cases.append((binary, SecretInvalid))
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    cases.append((big, SecretInvalid))
    cases.append((tmp_path / "missing", SecretNotFound))
    cases.append((tmp_path, SecretUnavailable))  # a directory
    for path, kind in cases:
        with pytest.raises(kind) as info:
            FileSecrets().read(SecretRef("file", str(path)))
        assert info.value.reference == f"file:{path}"
        assert str(path) in str(info.value) and not leaks(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_backend_unreadable_file_is_access_denied(tmp_path: Path) -> None:
    path = tmp_path / "private"
    path.write_text(SECRET)
    path.chmod(0)
    with pytest.raises(SecretAccessDenied):
        FileSecrets().read(SecretRef("file", str(path)))


def test_file_roots_confine_file_references_through_dots_and_links(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    root.mkdir()
    (root / "ok").write_text(SECRET)
    outside = tmp_path / "outside"
    outside.write_text("not-for-acgs")
    (root / "link").symlink_to(outside)
    backend = FileSecrets((root,))
    assert backend.read(SecretRef("file", str(root / "ok"))) == SECRET
    for target in (str(outside), f"{root}/../outside", str(root / "link"), "/etc/hostname"):
        with pytest.raises(SecretAccessDenied) as info:
            backend.read(SecretRef("file", target))
        assert "ACGS_SECRETS_FILE_ROOTS" in str(info.value) and "not-for-acgs" not in str(info.value)
    # A link inside the roots to a file inside the roots is fine (Kubernetes mounts are links).
    (root / "alias").symlink_to(root / "ok")
    assert backend.read(SecretRef("file", str(root / "alias"))) == SECRET


def test_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_TEST_SECRET", f"{SECRET}\n")
    monkeypatch.setenv("ACGS_TEST_EMPTY", "")
    monkeypatch.delenv("ACGS_TEST_UNSET", raising=False)
    assert EnvSecrets().read(SecretRef("env", "ACGS_TEST_SECRET")) == SECRET
    assert EnvSecrets({"X": "from-mapping"}).read(SecretRef("env", "X")) == "from-mapping"
    with pytest.raises(SecretNotFound, match="env:ACGS_TEST_UNSET: the variable is not set"):
        EnvSecrets().read(SecretRef("env", "ACGS_TEST_UNSET"))
    with pytest.raises(SecretInvalid, match="env:ACGS_TEST_EMPTY: the secret is empty"):
        EnvSecrets().read(SecretRef("env", "ACGS_TEST_EMPTY"))


def test_a_secret_that_looks_like_a_reference_is_not_resolved_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_TEST_OUTER", "env:ACGS_TEST_INNER")
    monkeypatch.setenv("ACGS_TEST_INNER", SECRET)
    assert SecretResolver().resolve("env:ACGS_TEST_OUTER") == "env:ACGS_TEST_INNER"


# -- Vault backend faults (a real server is in tests/test_secrets_vault.py) ------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_vault_backend_faults_name_the_reference_and_fail_closed(tmp_path: Path) -> None:
    pytest.importorskip("hvac")
    ref = SecretRef("vault", "secret/acgs/db", "password")
    with pytest.raises(SecretUnavailable, match="no Vault address"):
        VaultSecrets(SecretsSettings()).read(ref)
    with pytest.raises(SecretUnavailable, match="no Vault token"):
        VaultSecrets(SecretsSettings(vault_addr="http://127.0.0.1:1")).read(ref)
    with pytest.raises(SecretUnavailable, match="ACGS_VAULT_TOKEN_FILE"):
        VaultSecrets(SecretsSettings(vault_addr="http://127.0.0.1:1", vault_token_file=tmp_path / "none")).read(ref)
    # A real connection refused by a loopback port nobody listens on.
    settings = SecretsSettings(vault_addr=f"http://127.0.0.1:{_closed_port()}", vault_token=SECRET, vault_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(SecretUnavailable) as info:
        SecretResolver(settings).resolve("vault:secret/acgs/db#password")
    assert time.monotonic() - started < 10
    assert str(info.value).startswith("secret vault:secret/acgs/db#password: Vault is unreachable")
    assert not leaks(info.value)
    assert SECRET not in repr(settings) and SECRET not in repr(SecretResolver(settings))


def test_vault_backend_times_out_on_a_silent_server() -> None:
    pytest.importorskip("hvac")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts connections, never answers
        port = silent.getsockname()[1]
        settings = SecretsSettings(vault_addr=f"http://127.0.0.1:{port}", vault_token="t", vault_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(SecretUnavailable, match="did not answer within 0.5s"):
            VaultSecrets(settings).read(SecretRef("vault", "secret/x", "f"))
        assert time.monotonic() - started < 5


def test_settings_from_env_with_vault_fallbacks() -> None:
    env = {
        "VAULT_ADDR": "http://vault.example:8200",
        "VAULT_TOKEN": SECRET,
        "ACGS_VAULT_ADDR": "https://vault.internal:8200",
        "ACGS_SECRETS_TTL": "5",
        "ACGS_SECRETS_FILE_ROOTS": "/run/secrets,/etc/acgs",
        "ACGS_VAULT_CA_FILE": "/etc/acgs/vault-ca.pem",
    }
    settings = SecretsSettings.from_env(env)
    assert settings.vault_addr == "https://vault.internal:8200" and settings.vault_token == SECRET
    assert settings.ttl == 5 and settings.file_roots == (Path("/run/secrets"), Path("/etc/acgs"))
    assert settings.vault_ca_file == Path("/etc/acgs/vault-ca.pem")
    assert SECRET not in repr(settings)
    for bad in ({"ACGS_SECRETS_TTL": "-1"}, {"ACGS_SECRETS_FILE_ROOTS": "relative"}, {"ACGS_VAULT_TIMEOUT": "0"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SecretsSettings.from_env(bad)


# -- the resolver: cache, rotation, URLs ----------------------------------------------------------


def test_ttl_cache_rotation_fresh_and_forget(tmp_path: Path) -> None:
    path = tmp_path / "rotating"
    path.write_text("v1")
    clock = Clock()
    resolver = SecretResolver(SecretsSettings(ttl=30), clock=clock)
    ref = f"file:{path}"
    assert resolver.resolve(ref) == "v1"
    path.write_text("v2")
    clock.now += 29
    assert resolver.resolve(ref) == "v1"  # within the TTL
    assert resolver.resolve(ref, fresh=True) == "v2"  # read-through
    path.write_text("v3")
    clock.now += 10
    assert resolver.resolve(ref) == "v2"
    clock.now += 30
    assert resolver.resolve(ref) == "v3"  # the TTL passed
    path.write_text("v4")
    resolver.forget(ref)
    assert resolver.resolve(ref) == "v4"
    uncached = SecretResolver(SecretsSettings(ttl=0), clock=clock)
    assert uncached.resolve(ref) == "v4"
    path.write_text("v5")
    assert uncached.resolve(ref) == "v5"
    # A secret that disappears is a fault once the cache has lapsed, never the old value forever.
    path.unlink()
    clock.now += 31
    with pytest.raises(SecretNotFound):
        resolver.resolve(ref)


def test_urls_with_a_reference_as_password_or_as_a_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_TEST_PG_PASSWORD", "p@ss:w/rd%?#{}")
    monkeypatch.setenv("ACGS_TEST_URL", "postgresql://acgs:x@db:5432/acgs")
    resolver = SecretResolver(SecretsSettings(ttl=0))
    got = resolver.resolve_url("postgresql://acgs:{env:ACGS_TEST_PG_PASSWORD}@db:5432/acgs?sslmode=require")
    assert got == "postgresql://acgs:p%40ss%3Aw%2Frd%25%3F%23%7B%7D@db:5432/acgs?sslmode=require"
    assert resolver.resolve_url("redis://:{env:ACGS_TEST_PG_PASSWORD}@r:6379/0").startswith("redis://:p%40ss")
    assert resolver.resolve_url("env:ACGS_TEST_URL") == "postgresql://acgs:x@db:5432/acgs"
    assert resolver.resolve_url("postgresql://acgs:plain@db/acgs") == "postgresql://acgs:plain@db/acgs"
    # A password that is in braces but no reference stays what it is; a malformed reference is refused.
    assert resolver.resolve_url("postgresql://acgs:{pl@in}@db/acgs") == "postgresql://acgs:{pl@in}@db/acgs"
    with pytest.raises(SecretReferenceError, match="env:1X: write env:NAME"):
        resolver.resolve_url("postgresql://acgs:{env:1X}@db/acgs")
    monkeypatch.delenv("ACGS_TEST_PG_PASSWORD")
    with pytest.raises(SecretNotFound, match="env:ACGS_TEST_PG_PASSWORD"):
        resolver.resolve_url("postgresql://acgs:{env:ACGS_TEST_PG_PASSWORD}@db/acgs")


def test_default_resolver_follows_its_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACGS_SECRETS_TTL", "7")
    first = default_resolver()
    assert first.settings.ttl == 7 and default_resolver() is first
    monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
    assert default_resolver().settings.ttl == 0


# -- settings that resolve references --------------------------------------------------------------


def test_service_settings_resolve_references_and_show_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
    monkeypatch.setenv("ACGS_TEST_PG_PASSWORD", SECRET)
    monkeypatch.setenv("ACGS_TEST_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:6399/0")
    url = "postgresql://acgs:{env:ACGS_TEST_PG_PASSWORD}@127.0.0.1:5432/acgs"
    audit = AuditSettings(data_dir=tmp_path, database_url=url)
    evolution = EvolutionSettings(data_dir=tmp_path, database_url=url, webhook_urls=("http://h/",), webhook_secret="env:X")
    for settings in (audit, evolution):
        assert settings.resolved_database_url() == f"postgresql://acgs:{SECRET}@127.0.0.1:5432/acgs"
        public = repr(settings.public())
        assert SECRET not in public and "{env:ACGS_TEST_PG_PASSWORD}" not in public
        assert settings.public()["database_url"] == "postgresql://acgs:***@127.0.0.1:5432/acgs"
    assert evolution.public()["webhook_secret"] == "***"

    env = {"ACGS_REDIS_URL": "env:ACGS_TEST_REDIS_URL", "ACGS_AUTH_KEY_STORE": url}
    security = SecuritySettings.from_env(env)
    policy = PolicySettings.from_env(env)
    assert security.redis_url == policy.redis_url == f"redis://:{SECRET}@127.0.0.1:6399/0"
    assert security.resolved_key_store() == f"postgresql://acgs:{SECRET}@127.0.0.1:5432/acgs"
    assert SECRET not in repr(security.public()) and SECRET not in repr(policy.public())
    # A whole-URL reference is a valid key store setting; a missing secret stops the start.
    SecuritySettings(key_store="env:ACGS_TEST_REDIS_URL").validate()
    monkeypatch.delenv("ACGS_TEST_REDIS_URL")
    with pytest.raises(SecretNotFound, match="env:ACGS_TEST_REDIS_URL"):
        SecuritySettings.from_env(env)
    with pytest.raises(ValueError, match="ACGS_REDIS_URL"):
        PolicySettings.from_env({"ACGS_REDIS_URL": "env:not a name"})


def test_agent_registry_url_may_be_a_reference(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from acgs.registry.settings import RegistrySettings

    monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
    monkeypatch.setenv("ACGS_TEST_PG_PASSWORD", SECRET)
    registry = RegistrySettings(data_dir=tmp_path, url="postgresql://acgs:{env:ACGS_TEST_PG_PASSWORD}@127.0.0.1:5432/acgs")
    registry.validate()
    assert registry.resolved_url() == f"postgresql://acgs:{SECRET}@127.0.0.1:5432/acgs"
    assert SECRET not in repr(registry.public())
    whole = RegistrySettings(data_dir=tmp_path, url="env:ACGS_TEST_REGISTRY_URL")
    whole.validate()
    with pytest.raises(SecretNotFound, match="env:ACGS_TEST_REGISTRY_URL"):
        whole.resolved_url()


def test_audit_signing_key_from_references_and_no_key_made_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACGS_SECRETS_TTL", "0")
    private, verifier = core.generate_signing_key("secrets.test/audit")
    key_file = tmp_path / "signing.key"
    key_file.write_text(private + "\n")
    data = tmp_path / "data"
    monkeypatch.setenv("ACGS_TEST_SIGNING_KEY", private)
    for reference in (f"file:{key_file}", "env:ACGS_TEST_SIGNING_KEY"):
        monkeypatch.setenv(audit_keys.ENV_KEY, reference)
        assert audit_keys.load_or_create(data) == private
        assert audit_keys.pinned_verifier(None, data) == (verifier, audit_keys.ENV_KEY)
    monkeypatch.setenv(audit_keys.ENV_KEY, f"file:{tmp_path / 'gone.key'}")
    with pytest.raises(SecretNotFound) as info:
        audit_keys.load_or_create(data)
    assert "gone.key" in str(info.value)
    assert not (data / audit_keys.KEY_FILE).exists()  # fail closed: no key generated instead
    monkeypatch.setenv("ACGS_TEST_SIGNING_KEY", SECRET)  # not a key at all
    monkeypatch.setenv(audit_keys.ENV_KEY, "env:ACGS_TEST_SIGNING_KEY")
    with pytest.raises(SigningKeyError) as bad:
        audit_keys.load_or_create(data)
    assert not leaks(bad.value)


# -- JWT keys: rotation without a restart ----------------------------------------------------------


def _hs_token(key: str, sub: str = "svc", **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "exp": now + 300, "roles": ["agent"], **claims}, key, algorithm="HS256")


def test_hs256_key_file_rotation_is_read_through_and_old_tokens_stop(tmp_path: Path) -> None:
    key_file = tmp_path / "jwt.key"
    old, new = "old-hs256-key-" + "x" * 32, "new-hs256-key-" + "y" * 32
    key_file.write_text(old + "\n")
    clock = Clock()
    resolver = SecretResolver(SecretsSettings(ttl=30), clock=clock)
    settings = SecuritySettings(auth=True, jwt_algorithms=("HS256",), jwt_hs256_key_file=key_file)
    verifier = JwtVerifier(settings, secrets=resolver, clock=clock)
    old_token = _hs_token(old)
    assert verifier.verify(old_token).subject == "svc"
    key_file.write_text(new + "\n")  # rotated: the next token is signed with the new key
    new_token = _hs_token(new, sub="after")
    assert verifier.verify(new_token).subject == "after"  # read-through on the signature mismatch
    with pytest.raises(TokenRejected) as info:
        verifier.verify(old_token)  # remembered under the old key, forgotten with it
    assert info.value.reason == "invalid_token"
    # A flood of forged tokens forces at most one read a second.
    reads = 0
    real_read = resolver.read

    def counting(ref: SecretRef, *, fresh: bool = False) -> str:
        nonlocal reads
        reads += fresh
        return real_read(ref, fresh=fresh)

    resolver.read = counting  # type: ignore[method-assign]
    clock.now += 5
    for i in range(50):
        with pytest.raises(TokenRejected):
            verifier.verify(_hs_token(f"forged-key-{i}-" + "z" * 32))
    assert reads == 1


def test_rs256_public_key_from_env_reference_and_a_key_that_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("ACGS_TEST_JWT_PUB", pem.decode())
    clock = Clock()
    resolver = SecretResolver(SecretsSettings(ttl=30), clock=clock)
    settings = SecuritySettings(auth=True, jwt_algorithms=("RS256",), jwt_public_key_file=Path("env:ACGS_TEST_JWT_PUB"))
    verifier = JwtVerifier(settings, secrets=resolver, clock=clock)
    token = jwt.encode({"sub": "rs", "exp": int(time.time()) + 300}, private, algorithm="RS256")
    assert verifier.verify(token).subject == "rs"
    monkeypatch.delenv("ACGS_TEST_JWT_PUB")
    clock.now += 31
    with pytest.raises(TokenRejected) as info:
        verifier.verify(token)  # even the remembered token: the key cannot be read
    assert info.value.reason == "key_unavailable" and "ACGS_TEST_JWT_PUB" not in info.value.message
    monkeypatch.setenv("ACGS_TEST_JWT_PUB", pem.decode())
    clock.now += 31
    assert verifier.verify(token).subject == "rs"
    # Not a PEM key, or no key: the service does not start.
    monkeypatch.setenv("ACGS_TEST_JWT_PUB", SECRET)
    with pytest.raises(SecretInvalid, match="env:ACGS_TEST_JWT_PUB: not a PEM public key") as bad:
        JwtVerifier(settings, secrets=SecretResolver(SecretsSettings(ttl=0)))
    assert not leaks(bad.value)
    with pytest.raises(SecretNotFound):
        JwtVerifier(settings.replace(jwt_public_key_file=Path("env:ACGS_TEST_UNSET_PUB")))


def test_hs256_key_setting_may_be_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "hs256-from-env-" + "k" * 32
    monkeypatch.setenv("ACGS_TEST_HS", key)
    settings = SecuritySettings.from_env(
        {"ACGS_JWT_ALGORITHMS": "HS256", "ACGS_JWT_HS256_KEY": "env:ACGS_TEST_HS", "ACGS_AUTH": "1"}
    )
    assert settings.hs256_key() == key.encode()
    assert settings.public()["jwt_hs256_key"] == "***"
    assert JwtVerifier(settings).verify(_hs_token(key)).subject == "svc"


# -- the webhook secret ----------------------------------------------------------------------------


def test_webhook_relay_fails_closed_without_its_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from acgs.services.evolution.store import open_store
    from acgs.services.evolution.webhooks import WebhookRelay

    store = open_store(f"sqlite:///{tmp_path / 'evo.sqlite3'}")
    monkeypatch.delenv("ACGS_TEST_WEBHOOK", raising=False)
    with pytest.raises(SecretNotFound, match="env:ACGS_TEST_WEBHOOK"):
        WebhookRelay(store, "http://127.0.0.1:9/hook", "env:ACGS_TEST_WEBHOOK")
    with pytest.raises(SecretInvalid, match="ACGS_EVOLUTION_WEBHOOK_SECRET: the webhook secret is empty"):
        WebhookRelay(store, "http://127.0.0.1:9/hook", "")
    monkeypatch.setenv("ACGS_TEST_WEBHOOK", SECRET)
    relay = WebhookRelay(store, "http://127.0.0.1:9/hook", "env:ACGS_TEST_WEBHOOK")
    assert relay.signing_key() == SECRET
