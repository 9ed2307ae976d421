"""A throwaway OpenLDAP directory for tests: Debian's ``slapd`` with a configuration of its own.

``ldap_server`` (session scope) writes a fresh ``cn=config`` with ``slapadd -n0`` into a
temporary directory, seeds people and groups with ``slapadd -n1``, and runs ``slapd`` on two free
loopback ports: ``ldap://`` (StartTLS) and ``ldaps://``, both with a certificate from a throwaway
CA that names 127.0.0.1 only (so ``localhost`` is a host name mismatch). ``plain_ldap_server``
(module scope) is the same directory without any TLS. Both stop and remove everything afterwards.

When the tests run as root, slapadd and slapd run as ``nobody`` (``ACGS_TEST_LDAP_USER`` names
another). Without slapd (Debian packages ``slapd`` and ``ldap-utils``) the tests that need it are
skipped with that reason.

The directory (suffix ``dc=acgs,dc=test``): people under ``ou=people`` (``PEOPLE`` holds their
passwords), a service account, and the groups ``acgs-admins`` (alice and the awkwardly named
``eve, (ops)*``), ``reviewers`` (bob) and ``staff`` (carol, and everyone above; mapped to no
role). Anonymous clients may only bind; people and the service account may read.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services.procs import free_port, ports_open, running, spawn, stop, unprivileged, wait_until

SUFFIX = "dc=acgs,dc=test"
PEOPLE_BASE = f"ou=people,{SUFFIX}"
GROUPS_BASE = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=acgs-svc,ou=services,{SUFFIX}"
ADMINS_DN = f"cn=acgs-admins,{GROUPS_BASE}"
REVIEWERS_DN = f"cn=reviewers,{GROUPS_BASE}"
STAFF_DN = f"cn=staff,{GROUPS_BASE}"

#: uid -> password. ``eve, (ops)*`` carries every character that needs escaping in a DN or a filter.
PEOPLE = {
    "alice": "alice-Pw-1",
    "bob": "bob-Pw-2",
    "carol": "carol-Pw-3",
    "eve, (ops)*": "eve-Pw-4",
}
SERVICE_PASSWORD = "svc-Pw-0"
GROUP_MEMBERS = {
    ADMINS_DN: ["alice", "eve, (ops)*"],
    REVIEWERS_DN: ["bob"],
    STAFF_DN: ["alice", "bob", "carol", "eve, (ops)*"],
}
#: ACGS_LDAP_GROUP_ROLES for this directory: admins -> admin, reviewers -> reviewer (staff: none).
GROUP_ROLES = f"{ADMINS_DN}=admin;{REVIEWERS_DN}=reviewer"


def person_dn(uid: str) -> str:
    escaped = uid.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+").replace('"', '\\"')
    return f"uid={escaped},{PEOPLE_BASE}"


def _ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _binary(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.is_file()), None)


def make_ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_server_cert(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _config_ldif(root: Path, tls: tuple[Path, Path] | None) -> str:
    tls_lines = f"olcTLSCertificateFile: {tls[0]}\nolcTLSCertificateKeyFile: {tls[1]}\n" if tls else ""
    schemas = "".join(f"include: file:///etc/ldap/schema/{name}.ldif\n\n" for name in ("core", "cosine", "inetorgperson"))
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {root}/slapd.pid
olcArgsFile: {root}/slapd.args
{tls_lines}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcDbDirectory: {root}/db
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by self =xw by anonymous auth by * none
olcAccess: {{1}}to * by users read by * none
"""


def _data_ldif() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: acgs\no: ACGS test\n",
        f"dn: {PEOPLE_BASE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS_BASE}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: person\ncn: acgs-svc\nsn: service\nuserPassword: {_ssha(SERVICE_PASSWORD)}\n",
    ]
    for uid, password in PEOPLE.items():
        uid_b64 = base64.b64encode(uid.encode()).decode()
        dn_b64 = base64.b64encode(person_dn(uid).encode()).decode()
        entries.append(
            f"dn:: {dn_b64}\nobjectClass: inetOrgPerson\nuid:: {uid_b64}\ncn:: {uid_b64}\nsn: test\n"
            f"userPassword: {_ssha(password)}\n"
        )
    for group, members in GROUP_MEMBERS.items():
        cn = group.split(",", 1)[0].removeprefix("cn=")
        lines = "".join(f"member:: {base64.b64encode(person_dn(m).encode()).decode()}\n" for m in members)
        entries.append(f"dn: {group}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
    return "\n".join(entries)


class LdapServer:
    """One slapd process on loopback; ``tls`` False serves plain LDAP only (no StartTLS)."""

    def __init__(self, *, tls: bool = True) -> None:
        slapd, slapadd = _binary("slapd"), _binary("slapadd")
        if slapd is None or slapadd is None:
            pytest.skip("slapd is not installed (Debian packages slapd and ldap-utils; scripts/setup.sh installs them)")
        self.slapd, self.slapadd = slapd, slapadd
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix="acgs-ldap-"))
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "slapd.log"
        self.ca_file = self.root / "acgs-test-ca.pem"
        #: A CA that signed nothing of this server's: verification against it must fail.
        self.other_ca_file = self.root / "other-ca.pem"
        self.service_password_file = self.root / "service-password"

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """``ACGS_LDAP_*`` settings for this directory: StartTLS, a DN template, this CA."""
        values = {
            "ACGS_LDAP_URL": self.ldap_url,
            "ACGS_LDAP_CA_FILE": str(self.ca_file),
            "ACGS_LDAP_USER_DN_TEMPLATE": f"uid={{user}},{PEOPLE_BASE}",
            "ACGS_LDAP_GROUP_BASE": GROUPS_BASE,
            "ACGS_LDAP_GROUP_ROLES": GROUP_ROLES,
            "ACGS_LDAP_TIMEOUT": "5",
        }
        values.update(overrides)
        return {k: v for k, v in values.items() if v}

    def search_env(self, **overrides: str) -> dict[str, str]:
        """The same with a user search through the service account instead of a DN template."""
        search = {
            "ACGS_LDAP_USER_DN_TEMPLATE": "",
            "ACGS_LDAP_USER_BASE": PEOPLE_BASE,
            "ACGS_LDAP_BIND_DN": SERVICE_DN,
            "ACGS_LDAP_BIND_PASSWORD_FILE": str(self.service_password_file),
        }
        return self.env(**{**search, **overrides})

    def start(self) -> None:
        drop = unprivileged("ACGS_TEST_LDAP_USER")
        certs = None
        if self.tls:
            ca_key, ca_cert = make_ca(self.root, "acgs-test-ca")
            make_ca(self.root, "other-ca")
            certs = make_server_cert(self.root, ca_key, ca_cert)
        self.service_password_file.write_text(SERVICE_PASSWORD + "\n")
        (self.root / "slapd.d").mkdir()
        (self.root / "db").mkdir()
        (self.root / "config.ldif").write_text(_config_ldif(self.root, certs))
        (self.root / "data.ldif").write_text(_data_ldif())
        if drop:
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, drop["user"], drop["group"])
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"), "LC_ALL": "C"}
        for db, ldif in (("0", "config.ldif"), ("1", "data.ldif")):
            subprocess.run(
                [self.slapadd, "-n", db, "-F", str(self.root / "slapd.d"), "-l", str(self.root / ldif)],
                check=True, capture_output=True, env=env, cwd=self.root, **drop,
            )  # fmt: skip
        urls = self.ldap_url + "/" + (f" {self.ldaps_url}/" if self.tls else "")
        # -d 0: stay in the foreground (so the fixture owns the process) without debug output.
        self.proc = spawn(
            [self.slapd, "-d", "0", "-h", urls, "-F", str(self.root / "slapd.d")], self.log, env=env, cwd=self.root, **drop
        )
        ports = [p for p in (self.port, self.ldaps_port) if p]
        wait_until(ports_open(*ports), what="slapd", timeout=30, runner=self.proc, log=self.log)

    def stop(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def _started(tls: bool) -> Iterator[LdapServer]:
    server = LdapServer(tls=tls)
    with running(server, "a throwaway slapd"):
        yield server


@pytest.fixture(scope="session")
def ldap_server() -> Iterator[LdapServer]:
    """The session's directory with StartTLS and LDAPS."""
    yield from _started(tls=True)


@pytest.fixture(scope="module")
def plain_ldap_server() -> Iterator[LdapServer]:
    """A directory that offers no TLS at all: ACGS must refuse to send it a password."""
    yield from _started(tls=False)
