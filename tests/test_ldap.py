"""acgs.security.ldap against a real slapd (tests/services/ldap.py): binds over StartTLS and LDAPS,
group lookup by member, the group -> role mapping, and each fault as its own exception."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from acgs.security.ldap import (
    Directory,
    EmptyPassword,
    InvalidCredentials,
    LdapConfigError,
    LdapSettings,
    LdapTlsError,
    LdapUnavailable,
    NoMappedGroup,
    UnknownUser,
    normalise_dn,
    operator_auth,
    parse_group_roles,
)
from tests.services import ldap as slapd
from tests.services.ldap import (
    ADMINS_DN,
    GROUPS_BASE,
    PEOPLE,
    PEOPLE_BASE,
    REVIEWERS_DN,
    SERVICE_DN,
    STAFF_DN,
    LdapServer,
    person_dn,
)

# The throwaway slapd (tests/services/ldap.py).
ldap_server = slapd.ldap_server


def directory(env: dict[str, str]) -> Directory:
    return Directory(LdapSettings.from_env(env))


@pytest.fixture(params=["starttls", "ldaps"])
def url(request: pytest.FixtureRequest, ldap_server: LdapServer) -> str:
    return ldap_server.ldap_url if request.param == "starttls" else ldap_server.ldaps_url


@pytest.mark.parametrize("search", [False, True], ids=["dn-template", "search"])
def test_an_admin_binds_and_gets_the_mapped_role(ldap_server: LdapServer, url: str, search: bool) -> None:
    env = ldap_server.search_env(ACGS_LDAP_URL=url) if search else ldap_server.env(ACGS_LDAP_URL=url)
    operator = directory(env).authenticate("alice", PEOPLE["alice"])
    assert operator.provider == "ldap"
    assert normalise_dn(operator.subject) == normalise_dn(person_dn("alice"))
    assert operator.by == f"ldap:{operator.subject}"
    assert {normalise_dn(g) for g in operator.groups} == {normalise_dn(ADMINS_DN), normalise_dn(STAFF_DN)}
    assert operator.roles == {"admin"}
    assert operator.has("admin") and operator.has("reviewer")  # admin is accepted wherever any role is


@pytest.mark.parametrize("search", [False, True], ids=["dn-template", "search"])
def test_a_name_with_dn_and_filter_specials_is_found_exactly(ldap_server: LdapServer, search: bool) -> None:
    env = ldap_server.search_env() if search else ldap_server.env()
    operator = directory(env).authenticate("eve, (ops)*", PEOPLE["eve, (ops)*"])
    assert normalise_dn(operator.subject) == normalise_dn(person_dn("eve, (ops)*"))
    assert operator.roles == {"admin"}


@pytest.mark.parametrize("search", [False, True], ids=["dn-template", "search"])
def test_the_subject_is_the_directorys_dn_not_the_typed_name(ldap_server: LdapServer, search: bool) -> None:
    env = ldap_server.search_env() if search else ldap_server.env()
    typed = directory(env).authenticate("ALICE", PEOPLE["alice"])
    plain = directory(env).authenticate("alice", PEOPLE["alice"])
    assert typed.name == "ALICE" and typed.subject == plain.subject == "uid=alice,ou=people,dc=acgs,dc=test"


def test_roles_come_only_from_mapped_groups(ldap_server: LdapServer) -> None:
    bob = directory(ldap_server.env()).authenticate("bob", PEOPLE["bob"])
    assert bob.roles == {"reviewer"} and not bob.has("admin")
    # A group may carry several roles, and several groups add up.
    roles = f"{REVIEWERS_DN}=reviewer;{STAFF_DN}=auditor,agent"
    alice = directory(ldap_server.env(ACGS_LDAP_GROUP_ROLES=roles)).authenticate("alice", PEOPLE["alice"])
    assert alice.roles == {"auditor", "agent"}


def test_a_user_in_no_mapped_group_is_refused(ldap_server: LdapServer) -> None:
    with pytest.raises(NoMappedGroup, match=r"'carol'.*in no group.*cn=staff"):
        directory(ldap_server.env()).authenticate("carol", PEOPLE["carol"])


@pytest.mark.parametrize("search", [False, True], ids=["dn-template", "search"])
def test_wrong_and_empty_passwords_are_refused(ldap_server: LdapServer, search: bool) -> None:
    d = directory(ldap_server.search_env() if search else ldap_server.env())
    with pytest.raises(InvalidCredentials, match="wrong user name or password"):
        d.authenticate("alice", PEOPLE["bob"])
    with pytest.raises(EmptyPassword, match="anonymous"):
        d.authenticate("alice", "")


def test_an_unknown_user_is_refused(ldap_server: LdapServer) -> None:
    with pytest.raises(UnknownUser, match="no entry"):
        directory(ldap_server.search_env()).authenticate("mallory", "whatever")
    # Binding straight to a DN cannot tell a missing entry from a wrong password.
    with pytest.raises(InvalidCredentials):
        directory(ldap_server.env()).authenticate("mallory", "whatever")


@pytest.mark.parametrize("which", ["starttls", "ldaps"])
def test_a_certificate_from_another_ca_is_refused(ldap_server: LdapServer, which: str) -> None:
    url = ldap_server.ldap_url if which == "starttls" else ldap_server.ldaps_url
    env = ldap_server.env(ACGS_LDAP_URL=url, ACGS_LDAP_CA_FILE=str(ldap_server.other_ca_file))
    with pytest.raises(LdapTlsError, match="no verified TLS session"):
        directory(env).authenticate("alice", PEOPLE["alice"])
    # Nor is the system's trust store enough for a private CA.
    with pytest.raises(LdapTlsError):
        directory(ldap_server.env(ACGS_LDAP_URL=url, ACGS_LDAP_CA_FILE="")).authenticate("alice", PEOPLE["alice"])


@pytest.mark.parametrize("which", ["starttls", "ldaps"])
def test_a_certificate_for_another_host_name_is_refused(ldap_server: LdapServer, which: str) -> None:
    # The certificate names 127.0.0.1 only; localhost reaches the same server.
    port = ldap_server.port if which == "starttls" else ldap_server.ldaps_port
    scheme = "ldap" if which == "starttls" else "ldaps"
    with pytest.raises(LdapTlsError, match="match"):
        directory(ldap_server.env(ACGS_LDAP_URL=f"{scheme}://localhost:{port}")).authenticate("alice", PEOPLE["alice"])


def test_an_unreachable_directory_is_refused(ldap_server: LdapServer) -> None:
    from tests.services.conftest import free_port

    env = ldap_server.env(ACGS_LDAP_URL=f"ldaps://127.0.0.1:{free_port()}")
    with pytest.raises(LdapUnavailable, match="unreachable"):
        directory(env).authenticate("alice", PEOPLE["alice"])


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_a_directory_that_never_answers_is_refused_in_time(scheme: str) -> None:
    # The port accepts connections (the kernel's backlog) and then says nothing.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {**BASE, "ACGS_LDAP_URL": f"{scheme}://127.0.0.1:{silent.getsockname()[1]}", "ACGS_LDAP_TIMEOUT": "1"}
        started = time.monotonic()
        with pytest.raises(LdapUnavailable, match="did not answer within 1 s"):
            directory(env).authenticate("alice", "any")
        assert time.monotonic() - started < 10


def test_a_wrong_service_password_or_missing_base_is_a_configuration_fault(ldap_server: LdapServer, tmp_path: Path) -> None:
    wrong = tmp_path / "pw"
    wrong.write_text("not-it\n")
    with pytest.raises(LdapConfigError, match="refused the service account"):
        directory(ldap_server.search_env(ACGS_LDAP_BIND_PASSWORD_FILE=str(wrong))).authenticate("alice", PEOPLE["alice"])
    wrong.write_text("\n")
    with pytest.raises(LdapConfigError, match="is empty"):
        directory(ldap_server.search_env(ACGS_LDAP_BIND_PASSWORD_FILE=str(wrong))).authenticate("alice", PEOPLE["alice"])
    with pytest.raises(LdapConfigError, match="does not exist"):
        directory(ldap_server.env(ACGS_LDAP_GROUP_BASE="ou=nowhere,dc=acgs,dc=test")).authenticate("alice", PEOPLE["alice"])


# -- settings, no server --------------------------------------------------------------------


BASE = {
    "ACGS_LDAP_URL": "ldaps://ldap.example.org",
    "ACGS_LDAP_USER_DN_TEMPLATE": f"uid={{user}},{PEOPLE_BASE}",
    "ACGS_LDAP_GROUP_BASE": GROUPS_BASE,
    "ACGS_LDAP_GROUP_ROLES": f"{ADMINS_DN}=admin",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ACGS_LDAP_URL": "http://ldap.example.org"}, "write ldaps://host"),
        ({"ACGS_LDAP_URL": "ldapi:///run/slapd.sock"}, "write ldaps://host"),
        ({"ACGS_LDAP_URL": "ldaps://ldap.example.org/dc=x"}, "only scheme, host and port"),
        ({"ACGS_LDAP_URL": ""}, "ACGS_LDAP_URL is not set"),
        ({"ACGS_LDAP_GROUP_ROLES": ""}, "maps no group"),
        ({"ACGS_LDAP_GROUP_ROLES": f"{ADMINS_DN}=root"}, "unknown role"),
        # ``service`` is for ACGS's own services: no person gets it through a group.
        ({"ACGS_LDAP_GROUP_ROLES": f"{ADMINS_DN}=admin,service"}, "unknown role"),
        ({"ACGS_LDAP_GROUP_ROLES": "admin"}, "write <group DN>=<role>"),
        ({"ACGS_LDAP_USER_DN_TEMPLATE": "uid=x,ou=people"}, "exactly once"),
        ({"ACGS_LDAP_USER_BASE": PEOPLE_BASE}, "set one of"),
        ({"ACGS_LDAP_USER_DN_TEMPLATE": ""}, "set one of"),
        ({"ACGS_LDAP_BIND_DN": SERVICE_DN}, "needs ACGS_LDAP_BIND_PASSWORD_FILE"),
        ({"ACGS_LDAP_CA_FILE": "/nonexistent/ca.pem"}, "no such file"),
        ({"ACGS_LDAP_GROUP_FILTER": "member={dn}"}, "in parentheses"),
        ({"ACGS_LDAP_TIMEOUT": "0"}, "ACGS_LDAP_TIMEOUT"),
    ],
)
def test_incomplete_or_malformed_settings_are_refused(changes: dict[str, str], message: str) -> None:
    env = {k: v for k, v in {**BASE, **changes}.items() if v}
    with pytest.raises(LdapConfigError, match=message):
        LdapSettings.from_env(env)


def test_operator_auth_mode() -> None:
    assert operator_auth({}) == "none"
    assert operator_auth({"ACGS_LDAP_URL": "ldaps://x"}) == "ldap"
    assert operator_auth({"ACGS_OPERATOR_AUTH": "LDAP"}) == "ldap"
    assert operator_auth({"ACGS_OPERATOR_AUTH": "none", "ACGS_LDAP_URL": "ldaps://x"}) == "none"
    with pytest.raises(LdapConfigError, match="use none or ldap"):
        operator_auth({"ACGS_OPERATOR_AUTH": "kerberos"})


def test_group_dns_compare_in_one_spelling() -> None:
    assert normalise_dn("CN=ACGS-Admins, OU=Groups,DC=acgs,DC=test") == normalise_dn(ADMINS_DN)
    assert normalise_dn(r"uid=eve\, (ops)*,ou=people") == normalise_dn(r"uid=eve\2C (ops)*,ou=people")
    # An escaped comma is part of the value, not a separator.
    assert normalise_dn(r"uid=a\,ou\=b,dc=c") != normalise_dn("uid=a,ou=b,dc=c")
    roles = parse_group_roles(f"{ADMINS_DN}=admin\ncn=Reviewers,ou=groups,dc=acgs,dc=test=reviewer, auditor;")
    assert roles == {normalise_dn(ADMINS_DN): {"admin"}, normalise_dn(REVIEWERS_DN): {"reviewer", "auditor"}}
