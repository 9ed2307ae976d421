"""Operators through LDAP on the admin CLI, attacked: with operator authentication on, `acgs keys
create|revoke` and `acgs agents add|update|remove` run only for a person a real slapd vouches for
as admin (tests/services/ldap.py). Wrong and empty passwords, unknown users, users outside the
mapped groups, filter and DN injection in the name, a directory without TLS or with a foreign
certificate, and an unreachable directory are each refused with a clear message, and nothing is
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from acgs.cli import cli
from tests.services import ldap as slapd
from tests.services.conftest import free_port
from tests.services.ldap import PEOPLE, LdapServer

MODES = ["dn-template", "search"]

# The throwaway slapd (tests/services/ldap.py).
ldap_server = slapd.ldap_server
plain_ldap_server = slapd.plain_ldap_server


def run(args: list[str], env: dict[str, str], password: str | None = None) -> Result:
    """`acgs ARGS` with ``env`` (LDAP settings, operator); ``password`` typed at the prompt."""
    base = {"ACGS_OPERATOR": None, "ACGS_OPERATOR_PASSWORD_FILE": None, "ACGS_OPERATOR_AUTH": None}
    return CliRunner().invoke(cli, args, env={**base, **env}, input=None if password is None else password + "\n")


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.sqlite3'}"


def settings(server: LdapServer, mode: str, **overrides: str) -> dict[str, str]:
    return server.search_env(**overrides) if mode == "search" else server.env(**overrides)


def keys_in(store: str) -> list[dict[str, object]]:
    listed = run(["keys", "list", "--all", "--json", "--store", store], {})
    assert listed.exit_code == 0, listed.output
    return [json.loads(line) for line in listed.stdout.splitlines()]


@pytest.mark.parametrize("mode", MODES)
def test_an_admin_operator_creates_and_revokes_a_key(ldap_server: LdapServer, store: str, mode: str) -> None:
    env = settings(ldap_server, mode)
    created = run(
        ["keys", "create", "--name", "bot", "--role", "agent", "--json", "--store", store, "--operator", "alice"],
        env,
        PEOPLE["alice"],
    )
    assert created.exit_code == 0, created.output
    key = json.loads(created.stdout.strip().splitlines()[-1])  # stdout: the key only (the prompt and note are on stderr)
    assert key["name"] == "bot" and key["token"].startswith("acgs_")
    # Who did it, as the directory names them (provider and DN), not as typed.
    assert "authorised as admin by ldap (uid=alice,ou=people,dc=acgs,dc=test)" in created.stderr
    assert [k["id"] for k in keys_in(store)] == [key["id"]]

    revoked = run(["keys", "revoke", key["id"], "--store", store], {**env, "ACGS_OPERATOR": "alice"}, PEOPLE["alice"])
    assert revoked.exit_code == 0, revoked.output
    assert keys_in(store)[0]["revoked_at"] is not None


def test_scripts_give_the_password_in_a_file(ldap_server: LdapServer, store: str, tmp_path: Path) -> None:
    secret = tmp_path / "operator-password"
    env = {**ldap_server.env(), "ACGS_OPERATOR": "alice", "ACGS_OPERATOR_PASSWORD_FILE": str(secret)}
    secret.write_text("\n")  # an empty password, even from a file, is an anonymous bind: refused
    empty = run(["keys", "create", "--name", "bot", "--role", "agent", "--store", store], env)
    assert empty.exit_code == 1 and "operator refused (ldap_empty_password)" in empty.output, empty.output
    assert keys_in(store) == []
    secret.write_text(PEOPLE["alice"] + "\n")
    done = run(["keys", "create", "--name", "bot", "--role", "agent", "--store", store], env)
    assert done.exit_code == 0, done.output
    assert "LDAP password" not in done.output  # no prompt


def test_the_console_command_in_its_own_process(ldap_server: LdapServer, store: str, tmp_path: Path) -> None:
    # Done-when 2 of issue 16 through a real `acgs` process: the operator's password from a file.
    secret = tmp_path / "operator-password"
    args = [sys.executable, "-m", "acgs", "keys", "create", "--name", "bot", "--role", "agent", "--store", store]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACGS_LDAP_", "ACGS_OPERATOR"))}
    env.update(ldap_server.env(), ACGS_OPERATOR="alice", ACGS_OPERATOR_PASSWORD_FILE=str(secret))
    secret.write_text("not-alices\n")
    refused = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, refused.stderr
    assert "operator refused (ldap_invalid_credentials): operator 'alice' refused: wrong user name or password" in refused.stderr
    assert keys_in(store) == []
    secret.write_text(PEOPLE["alice"] + "\n")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "authorised as admin by ldap (uid=alice,ou=people,dc=acgs,dc=test)" in done.stderr
    assert [k["name"] for k in keys_in(store)] == ["bot"]


def test_agents_commands_need_an_admin(ldap_server: LdapServer, tmp_path: Path) -> None:
    registry = f"sqlite:///{tmp_path / 'agents.sqlite3'}"
    env = ldap_server.env()
    added = run(["agents", "add", "a1", "--trust", "0.5", "--store", registry, "--operator", "alice"], env, PEOPLE["alice"])
    assert added.exit_code == 0, added.output
    for args in (["add", "a2", "--trust", "0.9"], ["update", "a1", "--trust", "0.99"], ["remove", "a1"]):
        refused = run(["agents", *args, "--store", registry, "--operator", "bob"], env, PEOPLE["bob"])
        assert refused.exit_code == 1, refused.output
        assert "operator refused (operator_role)" in refused.output and "needs admin" in refused.output
        assert "holds reviewer" in refused.output
    shown = run(["agents", "list", "--json", "--store", registry], {})  # reads need no operator
    assert [json.loads(line)["trust_level"] for line in shown.stdout.splitlines()] == [0.5]
    updated = run(["agents", "update", "a1", "--trust", "0.7", "--store", registry, "--operator", "alice"], env, PEOPLE["alice"])
    removed = run(["agents", "remove", "a1", "--store", registry, "--operator", "alice"], env, PEOPLE["alice"])
    assert updated.exit_code == 0 and removed.exit_code == 0, updated.output + removed.output


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("alice", "alice-wrong", "ldap_invalid_credentials): operator 'alice' refused: wrong user name or password"),
        ("alice", PEOPLE["bob"], "wrong user name or password"),  # another person's password
        ("alice", "", "ldap_empty_password): operator 'alice' refused: empty password"),
        ("carol", PEOPLE["carol"], "ldap_no_mapped_group): operator 'carol'"),
        ("bob", PEOPLE["bob"], "keys create` needs admin"),
    ],
    ids=["wrong-password", "other-persons-password", "empty-password", "outside-mapped-groups", "reviewer-not-admin"],
)
def test_refused_operators_change_nothing(
    ldap_server: LdapServer, store: str, mode: str, name: str, password: str, message: str
) -> None:
    refused = run(
        ["keys", "create", "--name", "x", "--role", "admin", "--store", store, "--operator", name],
        settings(ldap_server, mode),
        password,
    )
    assert refused.exit_code == 1, refused.output
    assert message in refused.output
    assert "operator refused" in refused.output
    assert keys_in(store) == []


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_user_is_refused(ldap_server: LdapServer, store: str, mode: str) -> None:
    refused = run(
        ["keys", "create", "--name", "x", "--role", "agent", "--store", store, "--operator", "mallory"],
        settings(ldap_server, mode),
        "guess",
    )
    assert refused.exit_code == 1, refused.output
    expected = "ldap_unknown_user" if mode == "search" else "wrong user name or password"
    assert expected in refused.output
    assert keys_in(store) == []


INJECTIONS = [
    "*",
    "*)(uid=*",
    "admin)(|(uid=*",
    "alice)(|(uid=*",
    "alice)(objectClass=*",
    "alice,ou=x",
    "alice,ou=people,dc=acgs,dc=test",
    "alice+cn=alice",
    "uid=alice,ou=people,dc=acgs,dc=test",
    "alice\\",
    "alice\x00",
    "alice\n",
    " alice",
    "a*",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", INJECTIONS, ids=[repr(n) for n in INJECTIONS])
def test_injection_in_the_user_name_is_refused_even_with_a_real_password(
    ldap_server: LdapServer, store: str, mode: str, name: str
) -> None:
    # The attacker knows alice's password but tries to make the name select her (or anyone).
    refused = run(
        ["keys", "create", "--name", "x", "--role", "admin", "--store", store, "--operator", name],
        settings(ldap_server, mode),
        PEOPLE["alice"],
    )
    assert refused.exit_code == 1, refused.output
    assert "operator refused (ldap_" in refused.output
    assert any(
        reason in refused.output for reason in ("wrong user name or password", "ldap_unknown_user", "ldap_invalid_user_name")
    ), refused.output
    assert keys_in(store) == []


def test_a_directory_without_tls_gets_no_password(plain_ldap_server: LdapServer, store: str) -> None:
    # ldap:// means StartTLS, always; a server that cannot start it is refused before the bind.
    env = plain_ldap_server.env(ACGS_LDAP_CA_FILE="")
    refused = run(
        ["keys", "create", "--name", "x", "--role", "agent", "--store", store, "--operator", "alice"], env, PEOPLE["alice"]
    )
    assert refused.exit_code == 1, refused.output
    assert "operator refused (ldap_tls)" in refused.output and "StartTLS" in refused.output
    # ldaps:// against its plain port: the handshake fails.
    env = plain_ldap_server.env(ACGS_LDAP_URL=f"ldaps://127.0.0.1:{plain_ldap_server.port}", ACGS_LDAP_CA_FILE="")
    refused = run(
        ["keys", "create", "--name", "x", "--role", "agent", "--store", store, "--operator", "alice"], env, PEOPLE["alice"]
    )
    assert refused.exit_code == 1 and "operator refused (ldap_tls)" in refused.output, refused.output
    # There is no setting that allows plain LDAP.
    assert "no verified TLS session" in refused.output
    assert keys_in(store) == []


def test_a_foreign_certificate_or_unreachable_directory_is_refused(ldap_server: LdapServer, store: str) -> None:
    args = ["keys", "create", "--name", "x", "--role", "agent", "--store", store, "--operator", "alice"]
    foreign = run(args, ldap_server.env(ACGS_LDAP_CA_FILE=str(ldap_server.other_ca_file)), PEOPLE["alice"])
    assert foreign.exit_code == 1 and "operator refused (ldap_tls)" in foreign.output, foreign.output
    gone = run(args, ldap_server.env(ACGS_LDAP_URL=f"ldaps://127.0.0.1:{free_port()}"), PEOPLE["alice"])
    assert gone.exit_code == 1 and "operator refused (ldap_unavailable)" in gone.output and "unreachable" in gone.output, (
        gone.output
    )
    assert keys_in(store) == []


def test_configuration_faults_are_usage_errors(ldap_server: LdapServer, store: str) -> None:
    args = ["keys", "create", "--name", "x", "--role", "agent", "--store", store]
    missing = run(args, ldap_server.env(), PEOPLE["alice"])
    assert missing.exit_code == 2 and "give --operator NAME or set ACGS_OPERATOR" in missing.output, missing.output
    on_without_url = run([*args, "--operator", "alice"], {"ACGS_OPERATOR_AUTH": "ldap"}, PEOPLE["alice"])
    assert on_without_url.exit_code == 2 and "ACGS_LDAP_URL is not set" in on_without_url.output, on_without_url.output
    unknown_mode = run([*args, "--operator", "alice"], {"ACGS_OPERATOR_AUTH": "maybe"}, PEOPLE["alice"])
    assert unknown_mode.exit_code == 2 and "use none or ldap" in unknown_mode.output, unknown_mode.output
    plain_http = run([*args, "--operator", "alice"], ldap_server.env(ACGS_LDAP_URL="http://127.0.0.1:1"), PEOPLE["alice"])
    assert plain_http.exit_code == 2 and "write ldaps://host" in plain_http.output, plain_http.output
    assert keys_in(store) == []


def test_without_operator_authentication_the_commands_run_as_before(store: str) -> None:
    done = run(["keys", "create", "--name", "bot", "--role", "agent", "--store", store], {"ACGS_LDAP_URL": None})
    assert done.exit_code == 0, done.output
    assert "operator" not in done.output
    # Naming an operator while the check is off says so rather than implying a check.
    named = run(
        ["keys", "create", "--name", "bot2", "--role", "agent", "--store", store, "--operator", "alice"], {"ACGS_LDAP_URL": None}
    )
    assert named.exit_code == 0 and "operator authentication is off: 'alice' was not checked" in named.stderr
