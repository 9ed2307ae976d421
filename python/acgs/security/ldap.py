"""Operators through LDAP: bind as the person against the organisation's directory (always over
TLS: ``ldaps://`` or ``ldap://`` with StartTLS), find their groups, and map the groups to ACGS
roles. Every fault is a specific :class:`LdapError` and nothing is granted on one (fail closed).

Settings come from ``ACGS_LDAP_*`` variables; ``ACGS_OPERATOR_AUTH=ldap`` (or ``ACGS_LDAP_URL``
set) makes the admin commands of the CLI ask for an operator (see ``acgs.security.cli``)."""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ldap3 import AUTO_BIND_NONE, NO_ATTRIBUTES, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from acgs.errors import AcgsError
from acgs.security.principal import ADMIN, MAPPABLE_ROLES
from acgs.services.common.env import positive_float, read_env

PROVIDER = "ldap"

#: ``ldap`` turns operator authentication on; ``none`` keeps the CLI as it was. Unset: on when
#: ``ACGS_LDAP_URL`` is set.
OPERATOR_AUTH_ENV = "ACGS_OPERATOR_AUTH"
OPERATOR_AUTH_MODES = ("none", PROVIDER)

ENV_NAMES: dict[str, str] = {
    "url": "ACGS_LDAP_URL",
    "ca_file": "ACGS_LDAP_CA_FILE",
    "user_dn_template": "ACGS_LDAP_USER_DN_TEMPLATE",
    "user_base": "ACGS_LDAP_USER_BASE",
    "user_filter": "ACGS_LDAP_USER_FILTER",
    "bind_dn": "ACGS_LDAP_BIND_DN",
    "bind_password_file": "ACGS_LDAP_BIND_PASSWORD_FILE",
    "group_base": "ACGS_LDAP_GROUP_BASE",
    "group_filter": "ACGS_LDAP_GROUP_FILTER",
    "group_roles": "ACGS_LDAP_GROUP_ROLES",
    "timeout": "ACGS_LDAP_TIMEOUT",
}

#: A user name longer than this is refused before the directory sees it.
MAX_USER_NAME = 256


# -- errors ---------------------------------------------------------------------------------


class LdapError(AcgsError):
    """The directory did not vouch for the operator: nothing is granted."""

    code = "ldap_error"


class LdapConfigError(LdapError, ValueError):
    """The LDAP settings are incomplete or malformed (the message names the variable)."""

    code = "ldap_config"


class LdapUnavailable(LdapError):
    """The directory could not be reached or did not answer in time."""

    code = "ldap_unavailable"


class LdapTlsError(LdapError):
    """No verified TLS session: the server offers no TLS, its certificate does not verify
    against the CA, or it names another host."""

    code = "ldap_tls"


class InvalidUserName(LdapError):
    """The user name is empty, too long or holds control characters."""

    code = "ldap_invalid_user_name"


class EmptyPassword(LdapError):
    """An empty password: an LDAP bind with one is anonymous and proves nothing."""

    code = "ldap_empty_password"


class InvalidCredentials(LdapError):
    """The directory refused the user name and password."""

    code = "ldap_invalid_credentials"


class UnknownUser(LdapError):
    """The user search found no entry (or more than one) for the name."""

    code = "ldap_unknown_user"


class NoMappedGroup(LdapError):
    """The user is in none of the groups ACGS_LDAP_GROUP_ROLES maps to a role."""

    code = "ldap_no_mapped_group"


# -- settings -------------------------------------------------------------------------------


def normalise_dn(dn: str) -> str:
    """A DN in one spelling for comparison: attribute types and values lower-cased (the usual
    naming attributes cn, ou, dc, uid match case-insensitively), escapes (``\\,`` or ``\\2C``)
    decoded and written again one way, spaces around separators gone."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except lx.LDAPInvalidDnError as exc:
        raise ValueError(f"{dn!r} is not a DN ({exc})") from None
    out = []
    for kind, value, sep in parts:
        text = _unescape(value.strip()).lower()
        out.append(f"{kind.strip().lower()}={escape_rdn(text) if text else ''}{sep}")
    return "".join(out)


def _unescape(value: str) -> str:
    """An attribute value of a DN string as the text it stands for (RFC 4514: ``\\c`` or ``\\XX``
    hex pairs, several pairs making one UTF-8 character)."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        pair = value[i + 1 : i + 3]
        if c == "\\" and len(pair) == 2 and all(h in "0123456789abcdefABCDEF" for h in pair):
            out.append(int(pair, 16))
            i += 3
        elif c == "\\" and i + 1 < len(value):
            out += value[i + 1].encode()
            i += 2
        else:
            out += c.encode()
            i += 1
    return out.decode("utf-8", "replace")


def parse_group_roles(text: str) -> dict[str, frozenset[str]]:
    """``<group DN>=<role>[,<role>...]`` entries separated by ``;`` or newlines -> normalised
    group DN -> roles. The last ``=`` of an entry separates the DN from its roles."""
    out: dict[str, frozenset[str]] = {}
    for item in text.replace("\n", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        dn, sep, roles_text = item.rpartition("=")
        roles = frozenset(r.strip().lower() for r in roles_text.split(",") if r.strip())
        if not sep or not dn.strip() or not roles:
            raise ValueError(f"{item!r}: write <group DN>=<role>[,<role>], e.g. cn=acgs-admins,ou=groups,dc=example,dc=org=admin")
        unknown = sorted(roles - set(MAPPABLE_ROLES))
        if unknown:
            raise ValueError(
                f"{item!r}: unknown role(s) {', '.join(unknown)} for a directory group; use {', '.join(MAPPABLE_ROLES)}"
            )
        key = normalise_dn(dn.strip())
        out[key] = out.get(key, frozenset()) | roles
    return out


def _dn(text: str) -> str | None:
    if not text:
        return None
    normalise_dn(text)
    return text


def _template(placeholder: str) -> Any:
    def parse(text: str) -> str | None:
        if not text:
            return None
        if text.count(placeholder) != 1:
            raise ValueError(f"must hold {placeholder} exactly once")
        return text

    return parse


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


_PARSERS: dict[str, Any] = {
    "url": lambda t: t or None,
    "ca_file": _optional_path,
    "user_dn_template": _template("{user}"),
    "user_base": _dn,
    "user_filter": _template("{user}"),
    "bind_dn": _dn,
    "bind_password_file": _optional_path,
    "group_base": _dn,
    "group_filter": _template("{dn}"),
    "group_roles": parse_group_roles,
    "timeout": positive_float,
}


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """Where the directory is and how people and groups are found in it."""

    #: ``ldaps://host[:636]`` or ``ldap://host[:389]`` (then StartTLS is required).
    url: str | None = None
    #: PEM file of the CA(s) the server's certificate must chain to (default: the system's).
    ca_file: Path | None = None
    #: Bind straight as this DN, ``{user}`` replaced by the escaped name
    #: (``uid={user},ou=people,dc=example,dc=org``) ...
    user_dn_template: str | None = None
    #: ... or search for the user under this base with ``user_filter``.
    user_base: str | None = None
    user_filter: str = "(uid={user})"
    #: Service account for the user and group searches (anonymous searches without it); its
    #: password is read from ``bind_password_file``.
    bind_dn: str | None = None
    bind_password_file: Path | None = None
    #: Where groups are looked up with ``group_filter`` (``{dn}``: the user's escaped DN; the
    #: groups' member lists are read, not the user's memberOf, which many directories leave empty).
    group_base: str | None = None
    group_filter: str = "(|(member={dn})(uniqueMember={dn}))"
    #: Group DN -> ACGS roles.
    group_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Seconds allowed to connect and for each answer.
    timeout: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LdapSettings:
        """``ACGS_LDAP_*`` variables, then ``overrides``; ``LdapConfigError`` names what is wrong."""
        try:
            values = read_env(ENV_NAMES, _PARSERS, environ)
        except ValueError as exc:
            raise LdapConfigError(str(exc)) from None
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def need(ok: object, message: str) -> None:
            if not ok:
                raise LdapConfigError(message)

        need(self.url, "ACGS_LDAP_URL is not set (ldaps://host or ldap://host, which then uses StartTLS)")
        scheme, host, port = self.endpoint
        need(
            (self.user_dn_template is None) != (self.user_base is None),
            "set one of ACGS_LDAP_USER_DN_TEMPLATE (bind as uid={user},ou=people,...) or ACGS_LDAP_USER_BASE (search)",
        )
        need(self.group_base, "ACGS_LDAP_GROUP_BASE is not set (where the groups are looked up)")
        need(self.group_roles, "ACGS_LDAP_GROUP_ROLES maps no group to a role: nobody could be authorised")
        need(not self.bind_dn or self.bind_password_file, "ACGS_LDAP_BIND_DN needs ACGS_LDAP_BIND_PASSWORD_FILE")
        need(not self.bind_password_file or self.bind_dn, "ACGS_LDAP_BIND_PASSWORD_FILE needs ACGS_LDAP_BIND_DN")
        need(self.ca_file is None or self.ca_file.is_file(), f"ACGS_LDAP_CA_FILE={self.ca_file}: no such file")
        for name, text in (("ACGS_LDAP_USER_FILTER", self.user_filter), ("ACGS_LDAP_GROUP_FILTER", self.group_filter)):
            need(text.startswith("(") and text.endswith(")"), f"{name}={text!r}: a filter is written in parentheses")
        if self.user_dn_template:
            try:
                normalise_dn(self.user_dn_template.replace("{user}", "x"))
            except ValueError as exc:
                raise LdapConfigError(f"ACGS_LDAP_USER_DN_TEMPLATE: {exc}") from None

    @property
    def endpoint(self) -> tuple[str, str, int]:
        """``(scheme, host, port)`` of the URL; only ``ldaps`` and ``ldap`` (with StartTLS)."""
        parts = urlsplit(self.url or "")
        try:
            port = parts.port
        except ValueError:
            raise LdapConfigError(f"ACGS_LDAP_URL={self.url!r}: bad port") from None
        scheme = parts.scheme.lower()
        if scheme not in ("ldaps", "ldap") or not parts.hostname:
            raise LdapConfigError(f"ACGS_LDAP_URL={self.url!r}: write ldaps://host[:port] or ldap://host[:port] (StartTLS)")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise LdapConfigError(f"ACGS_LDAP_URL={self.url!r}: only scheme, host and port (the bases are settings of their own)")
        return scheme, parts.hostname, port or (636 if scheme == "ldaps" else 389)


def operator_auth(environ: Mapping[str, str]) -> str:
    """``ldap`` or ``none``: whether the admin commands need an operator from the directory."""
    mode = environ.get(OPERATOR_AUTH_ENV, "").strip().lower()
    if not mode:
        return PROVIDER if environ.get(ENV_NAMES["url"], "").strip() else "none"
    if mode not in OPERATOR_AUTH_MODES:
        raise LdapConfigError(f"{OPERATOR_AUTH_ENV}={mode!r}: use {' or '.join(OPERATOR_AUTH_MODES)}")
    return mode


# -- the directory --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operator:
    """A person the directory vouched for. ``subject`` is their DN, the identity the provider
    gives (``name`` is only what they typed)."""

    provider: str
    subject: str
    name: str
    groups: tuple[str, ...]
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return ADMIN in self.roles or role in self.roles

    @property
    def by(self) -> str:
        """``ldap:uid=alice,ou=people,dc=example,dc=org``: who did it, for records and logs."""
        return f"{self.provider}:{self.subject}"


def _close(conn: Connection) -> None:
    """Unbinds, ignoring a connection that is already broken (after a failed TLS handshake)."""
    with contextlib.suppress(lx.LDAPException, OSError):
        conn.unbind()


def check_user_name(user: str) -> str:
    if not user or len(user) > MAX_USER_NAME or user != user.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in user):
        raise InvalidUserName(
            f"operator name {user[:40]!r} refused: empty, over {MAX_USER_NAME} characters,"
            " spaces at an end, or control characters"
        )
    return user


def read_secret_file(path: Path, what: str) -> str:
    """A password kept in a file: the whole file but one trailing newline."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LdapConfigError(f"cannot read {what} from {path}: {exc}") from None
    return text.removesuffix("\n").removesuffix("\r")


class _VerifiedTls(Tls):
    """TLS as the standard library verifies it: the chain against the CA file (or the system's
    CAs), the host name or IP address of the URL against the certificate (ldap3's own check
    falls back to a Python 3.4 copy that knows no IP addresses on 3.12+), TLS 1.2 or newer, SNI.
    Used for LDAPS and for StartTLS alike."""

    def __init__(self, host: str, ca_file: Path | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file) if ca_file else None)
        self._host = host
        self._context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
        if not (self._context.check_hostname and self._context.verify_mode == ssl.CERT_REQUIRED):
            raise LdapConfigError("this Python's default TLS context does not verify certificates")

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake, server_hostname=self._host
        )


class Directory:
    """One LDAP directory as ACGS uses it: authenticate a person and find their roles."""

    def __init__(self, settings: LdapSettings) -> None:
        settings.validate()
        self.settings = settings
        scheme, self.host, self.port = settings.endpoint
        self.ldaps = scheme == "ldaps"
        self._tls = _VerifiedTls(self.host, settings.ca_file)

    @property
    def _seconds(self) -> int:
        return max(1, math.ceil(self.settings.timeout))

    @property
    def where(self) -> str:
        return f"{'ldaps' if self.ldaps else 'ldap+StartTLS'}://{self.host}:{self.port}"

    def authenticate(self, user: str, password: str) -> Operator:
        """Binds as ``user`` with ``password`` and returns who they are with their mapped roles.
        Raises an :class:`LdapError` subclass for every way this can fail; never returns an
        operator without roles."""
        check_user_name(user)
        if not password:
            raise EmptyPassword(f"operator {user!r} refused: empty password (an LDAP bind with one is anonymous)")
        lookup = self._service_connection()  # None without a service account
        try:
            dn = self._find_user(lookup, user) if self.settings.user_base else self._template_dn(user)
            person, subject = self._bind(dn, password, user)
            try:
                groups = self._groups(lookup or person, dn)
            finally:
                _close(person)
        finally:
            if lookup is not None:
                _close(lookup)
        roles: frozenset[str] = frozenset()
        for group in groups:
            roles |= self.settings.group_roles.get(normalise_dn(group), frozenset())
        if not roles:
            raise NoMappedGroup(
                f"operator {user!r} ({subject}) is in no group that ACGS_LDAP_GROUP_ROLES maps to a role"
                f" (groups found: {', '.join(groups) or 'none'})"
            )
        return Operator(PROVIDER, subject, user, tuple(groups), roles)

    # -- steps ----------------------------------------------------------------------------

    def _template_dn(self, user: str) -> str:
        template = self.settings.user_dn_template or ""
        return template.replace("{user}", escape_rdn(user))

    def _find_user(self, lookup: Connection | None, user: str) -> str:
        conn = lookup or self._open()  # anonymous search without a service account
        query = self.settings.user_filter.replace("{user}", escape_filter_chars(user))
        try:
            entries = self._search(conn, self.settings.user_base or "", query, "user")
        finally:
            if lookup is None:
                _close(conn)
        if len(entries) != 1:
            found = "no entry" if not entries else f"{len(entries)} entries"
            raise UnknownUser(f"operator {user!r} refused: {found} under {self.settings.user_base} match {query}")
        return entries[0]

    def _groups(self, conn: Connection, dn: str) -> list[str]:
        query = self.settings.group_filter.replace("{dn}", escape_filter_chars(dn))
        return self._search(conn, self.settings.group_base or "", query, "group")

    def _search(self, conn: Connection, base: str, query: str, what: str) -> list[str]:
        try:
            conn.search(base, query, search_scope=SUBTREE, attributes=NO_ATTRIBUTES, size_limit=1000, time_limit=self._seconds)
        except lx.LDAPNoSuchObjectResult:
            raise LdapConfigError(f"the {what} base {base!r} does not exist in the directory at {self.where}") from None
        except lx.LDAPException as exc:
            raise self._fault(exc, f"{what} search") from None
        return [str(e["dn"]) for e in conn.response or () if e.get("type") == "searchResEntry"]

    def _service_connection(self) -> Connection | None:
        if not self.settings.bind_dn:
            return None
        # Hook for a secrets store: the service account's password is read here and nowhere else.
        password = read_secret_file(self.settings.bind_password_file or Path(), "the LDAP service account's password")
        if not password:
            raise LdapConfigError(f"ACGS_LDAP_BIND_PASSWORD_FILE={self.settings.bind_password_file} is empty")
        try:
            return self._bind(self.settings.bind_dn, password, None)[0]
        except InvalidCredentials:
            raise LdapConfigError(f"the directory refused the service account {self.settings.bind_dn}") from None

    def _open(self) -> Connection:
        """A connection with a verified TLS session and no bind yet."""
        server = Server(
            self.host, port=self.port, use_ssl=self.ldaps, tls=self._tls, get_info=NONE, connect_timeout=self.settings.timeout
        )
        conn = Connection(
            server,
            authentication=SIMPLE,
            auto_bind=AUTO_BIND_NONE,
            raise_exceptions=True,
            read_only=True,
            auto_referrals=False,  # a referral could name another server, without our TLS checks
            receive_timeout=self._seconds,  # ldap3 packs it into SO_RCVTIMEO: whole seconds
        )
        try:
            conn.open()
            if not self.ldaps:
                self._start_tls(conn)
        except LdapError:
            _close(conn)
            raise
        except lx.LDAPException as exc:
            _close(conn)
            raise self._fault(exc, "connect") from None
        if not (self.ldaps or conn.tls_started):
            _close(conn)
            raise LdapTlsError(f"{self.where}: no TLS session")
        return conn

    def _start_tls(self, conn: Connection) -> None:
        try:
            started = conn.start_tls()
        except lx.LDAPException as exc:
            fault = self._fault(exc, "StartTLS")
            if isinstance(fault, LdapTlsError | LdapUnavailable):
                raise fault from None
            # The server answered but would not start TLS: a plain-LDAP server gets no password.
            raise LdapTlsError(f"{self.where}: no verified TLS session: the server refused StartTLS ({exc})") from None
        if not started:
            raise LdapTlsError(f"{self.where}: no verified TLS session: StartTLS did not start")

    def _bind(self, dn: str, password: str, user: str | None) -> tuple[Connection, str]:
        """A connection bound as ``dn`` and the DN the server says the session has (its own
        spelling: the subject recorded for the person whatever case or spacing they typed)."""
        conn = self._open()
        who = f"operator {user!r}" if user is not None else f"service account {dn}"
        conn.user = dn
        conn.password = password
        try:
            if not conn.bind():
                raise InvalidCredentials(f"{who} refused: wrong user name or password")
            # Defence in depth: the server must agree the session is not anonymous.
            identity = conn.extend.standard.who_am_i()
        except lx.LDAPInvalidCredentialsResult:
            _close(conn)
            raise InvalidCredentials(f"{who} refused: wrong user name or password") from None
        except lx.LDAPPasswordIsMandatoryError:
            _close(conn)
            raise EmptyPassword(f"{who} refused: empty password") from None
        except LdapError:
            _close(conn)
            raise
        except lx.LDAPException as exc:
            _close(conn)
            raise self._fault(exc, "bind") from None
        if not isinstance(identity, str) or identity in ("", "dn:", "u:"):
            _close(conn)
            raise InvalidCredentials(f"{who} refused: the directory reports an anonymous session after the bind")
        if identity.startswith("dn:") and normalise_dn(identity[3:]) != normalise_dn(dn):
            _close(conn)
            raise InvalidCredentials(f"{who} refused: the directory says the session is {identity[3:]!r}, not {dn!r}")
        return conn, identity[3:] if identity.startswith("dn:") else dn

    def _fault(self, exc: lx.LDAPException, stage: str) -> LdapError:
        text = str(exc)
        lowered = text.lower()
        if "timed out" in lowered:
            return LdapUnavailable(f"directory {self.where} did not answer within {self._seconds} s ({stage}): {text}")
        if isinstance(exc, lx.LDAPStartTLSError | lx.LDAPCertificateError) or any(
            word in lowered for word in ("ssl", "certificate", "tls")
        ):
            return LdapTlsError(f"{self.where}: no verified TLS session ({stage}): {text}")
        if isinstance(exc, lx.LDAPCommunicationError | lx.LDAPSocketOpenError | lx.LDAPBusyResult | lx.LDAPUnavailableResult):
            return LdapUnavailable(f"directory {self.where} unreachable ({stage}): {text}")
        return LdapError(f"directory {self.where} refused the {stage}: {text}")
