"""Secrets named by reference in the operator's settings, read from a secrets store.

A setting that holds a secret (the audit signing key, a database or Redis URL, the webhook
secret, a JWT key) may hold the secret itself, as before, or a reference to it:

    file:/run/secrets/acgs-webhook        a file (surrounding whitespace dropped)
    env:ACGS_WEBHOOK_SECRET               an environment variable
    vault:secret/acgs/audit#signing_key   field ``signing_key`` of the KV v2 secret ``acgs/audit``
                                          under the mount ``secret`` (Vault or OpenBao)

In a database or Redis URL the password alone may be a reference, in braces:
``postgresql://acgs:{vault:secret/acgs/db#password}@db:5432/acgs``. References come from the
operator's configuration only (``ACGS_*`` variables and the configuration file); nothing a
client sends is ever resolved as one.

Each scheme has one :class:`SecretsProvider`. :class:`SecretResolver` routes a reference to its
provider and keeps what it read for ``ACGS_SECRETS_TTL`` seconds (default 30), so a rotated
secret takes effect within that time without a restart. Every fault is a :class:`SecretError`
subclass whose message names the reference, never the value, and no caller goes on without the
secret (fail closed)."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from acgs.errors import AcgsError
from acgs.services.common.env import read_env

if TYPE_CHECKING:
    import hvac

SCHEMES = ("file", "env", "vault")

#: Environment variable for each setting of the secrets layer. The Vault ones fall back on the
#: Vault CLI's own names (``VAULT_ADDR``, ``VAULT_TOKEN``...) when unset.
ENV_NAMES: dict[str, str] = {
    "ttl": "ACGS_SECRETS_TTL",
    "file_roots": "ACGS_SECRETS_FILE_ROOTS",
    "vault_addr": "ACGS_VAULT_ADDR",
    "vault_token": "ACGS_VAULT_TOKEN",
    "vault_token_file": "ACGS_VAULT_TOKEN_FILE",
    "vault_namespace": "ACGS_VAULT_NAMESPACE",
    "vault_ca_file": "ACGS_VAULT_CA_FILE",
    "vault_timeout": "ACGS_VAULT_TIMEOUT",
}
_VAULT_FALLBACKS = {
    "vault_addr": "VAULT_ADDR",
    "vault_token": "VAULT_TOKEN",
    "vault_namespace": "VAULT_NAMESPACE",
    "vault_ca_file": "VAULT_CACERT",
}
#: Largest secret a file may hold; a larger one is refused rather than read into memory.
MAX_FILE_BYTES = 1 << 20

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VAULT_SEGMENT = re.compile(r"[A-Za-z0-9._@+=-]+\Z")
#: ``{<reference>}`` as the password of a URL's user info.
_URL_PASSWORD = re.compile(r"\A(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@{}]*:)\{(?P<ref>[^{}]+)\}(?P<tail>@.*)\Z", re.DOTALL)


class SecretError(AcgsError):
    """A secret could not be had. ``reference`` is the reference that was asked for (never the
    secret)."""

    code = "secret_error"

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"secret {reference}: {reason}")
        self.reference = reference
        self.reason = reason


class SecretReferenceError(SecretError, ValueError):
    """The reference itself is malformed (an unknown form, a relative path, an empty field)."""

    code = "invalid_secret_reference"


class SecretNotFound(SecretError, LookupError):
    """The file, variable, Vault secret or field does not exist."""

    code = "secret_not_found"


class SecretAccessDenied(SecretError):
    """The store refused access (a file's permissions, a path outside ``ACGS_SECRETS_FILE_ROOTS``,
    Vault's 403)."""

    code = "secret_access_denied"


class SecretUnavailable(SecretError):
    """The store could not be asked (Vault unreachable or failing, no address or token, ``hvac``
    not installed)."""

    code = "secret_unavailable"


class SecretInvalid(SecretError):
    """The store answered, but not with a usable secret: empty, not text, not UTF-8, too large."""

    code = "secret_invalid"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed reference: ``scheme`` and ``target`` (a path, a variable name, or
    ``<mount>/<path>`` in Vault) and, for Vault, the ``field`` of the secret."""

    scheme: str
    target: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}" + (f"#{self.field}" if self.field is not None else "")

    @property
    def mount(self) -> str:
        return self.target.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.target.split("/", 1)[1]


def parse_reference(text: str) -> SecretRef | None:
    """The reference ``text`` is, or None when it is a plain value. Text that starts like a
    reference (``file:``, ``env:``, ``vault:``) but is malformed raises ``SecretReferenceError``
    rather than being taken as a plain value."""
    scheme, sep, rest = text.partition(":")
    if not sep or scheme not in SCHEMES:
        return None
    if scheme == "file":
        if not rest.startswith("/") or "\0" in rest or rest != rest.strip():
            raise SecretReferenceError(text, "write file:/absolute/path")
        return SecretRef("file", rest)
    if scheme == "env":
        if not _ENV_NAME.match(rest):
            raise SecretReferenceError(text, "write env:NAME (letters, digits and _)")
        return SecretRef("env", rest)
    target, hash_sep, field = rest.partition("#")
    segments = target.split("/")
    if (
        not hash_sep
        or not field
        or len(segments) < 2
        or not all(_VAULT_SEGMENT.match(s) and s not in (".", "..") for s in segments)
        or not field.isprintable()
        or field != field.strip()
    ):
        raise SecretReferenceError(text, "write vault:<mount>/<path>#<field>")
    return SecretRef("vault", target, field)


def is_reference(text: str | None) -> bool:
    return bool(text) and parse_reference(text or "") is not None


class SecretsProvider(Protocol):
    """One backend: reads the secret a reference of its scheme names, or raises a
    ``SecretError``."""

    scheme: str

    def read(self, ref: SecretRef) -> str: ...


def _usable(ref: SecretRef, value: str) -> str:
    value = value.strip()
    if not value:
        raise SecretInvalid(str(ref), "the secret is empty")
    return value


class FileSecrets:
    """``file:/path``: today's behaviour (Docker and Kubernetes secrets are files). With
    ``roots``, only files whose real path lies under one of them may be read."""

    scheme = "file"

    def __init__(self, roots: tuple[Path, ...] = ()) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)

    def read(self, ref: SecretRef) -> str:
        real = Path(os.path.realpath(ref.target))
        if self.roots and not any(real == root or root in real.parents for root in self.roots):
            raise SecretAccessDenied(str(ref), "the file is outside ACGS_SECRETS_FILE_ROOTS")
        try:
            with open(real, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise SecretNotFound(str(ref), "no such file") from None
        except PermissionError:
            raise SecretAccessDenied(str(ref), "permission denied reading the file") from None
        except OSError as exc:
            raise SecretUnavailable(str(ref), f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
        if len(data) > MAX_FILE_BYTES:
            raise SecretInvalid(str(ref), f"the file is larger than {MAX_FILE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretInvalid(str(ref), "the file is not UTF-8 text") from None
        return _usable(ref, text)


class EnvSecrets:
    """``env:NAME``: a variable of this process's environment (or of ``environ``)."""

    scheme = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def read(self, ref: SecretRef) -> str:
        env = os.environ if self._environ is None else self._environ
        value = env.get(ref.target)
        if value is None:
            raise SecretNotFound(str(ref), "the variable is not set")
        return _usable(ref, value)


class VaultSecrets:
    """``vault:<mount>/<path>#<field>``: a field of a KV version 2 secret in HashiCorp Vault or
    OpenBao (the same API), read with ``hvac``. The token file is read again before each read, so
    a token a Vault agent renews is picked up."""

    scheme = "vault"

    def __init__(self, settings: SecretsSettings) -> None:
        self.settings = settings
        self._client: hvac.Client | None = None
        self._lock = threading.Lock()

    def _token(self, ref: SecretRef) -> str:
        if self.settings.vault_token_file is not None:
            try:
                token = self.settings.vault_token_file.read_text().strip()
            except OSError as exc:
                raise SecretUnavailable(
                    str(ref), f"cannot read ACGS_VAULT_TOKEN_FILE: {exc.strerror or type(exc).__name__}"
                ) from None
        else:
            token = (self.settings.vault_token or "").strip()
        if not token:
            raise SecretUnavailable(str(ref), "no Vault token: set ACGS_VAULT_TOKEN_FILE (or ACGS_VAULT_TOKEN)")
        return token

    def _connect(self, ref: SecretRef) -> hvac.Client:
        if not self.settings.vault_addr:
            raise SecretUnavailable(str(ref), "no Vault address: set ACGS_VAULT_ADDR")
        try:
            import hvac  # imported late: ACGS works without the vault extra
        except ImportError:
            raise SecretUnavailable(str(ref), "the Vault backend needs hvac (pip install 'acgs[vault]')") from None
        token = self._token(ref)
        with self._lock:
            if self._client is None:
                verify: str | bool = str(self.settings.vault_ca_file) if self.settings.vault_ca_file else True
                self._client = hvac.Client(
                    url=self.settings.vault_addr,
                    token=token,
                    namespace=self.settings.vault_namespace,
                    verify=verify,
                    # requests takes fractional seconds; the hvac stub says int.
                    timeout=self.settings.vault_timeout,  # type: ignore[arg-type]
                )
            else:
                self._client.token = token
            return self._client

    def read(self, ref: SecretRef) -> str:
        client = self._connect(ref)
        import hvac.exceptions as hvac_exceptions
        import requests.exceptions as requests_exceptions

        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=ref.path, mount_point=ref.mount, raise_on_deleted_version=True
            )
        except hvac_exceptions.Forbidden:
            raise SecretAccessDenied(str(ref), "Vault refused access (403): check the token's policy") from None
        except hvac_exceptions.InvalidPath:
            raise SecretNotFound(str(ref), "no such secret in Vault (404)") from None
        except hvac_exceptions.Unauthorized:
            raise SecretAccessDenied(str(ref), "Vault refused the token (401)") from None
        except hvac_exceptions.VaultError as exc:
            status = getattr(exc, "status_code", None)
            raise SecretUnavailable(str(ref), f"Vault answered an error ({status or type(exc).__name__})") from None
        except requests_exceptions.Timeout:
            raise SecretUnavailable(str(ref), f"Vault did not answer within {self.settings.vault_timeout:g}s") from None
        except requests_exceptions.SSLError:
            raise SecretUnavailable(str(ref), "TLS to Vault failed (check ACGS_VAULT_CA_FILE)") from None
        except requests_exceptions.RequestException as exc:
            raise SecretUnavailable(str(ref), f"Vault is unreachable ({type(exc).__name__})") from None
        data = response.get("data", {}).get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise SecretInvalid(str(ref), "Vault's answer holds no KV v2 data (is the mount KV version 2?)")
        if ref.field not in data:
            raise SecretNotFound(str(ref), f"the secret has no field {ref.field!r}")
        value = data[ref.field]
        if not isinstance(value, str):
            raise SecretInvalid(str(ref), f"the field holds {type(value).__name__}, not a string")
        return _usable(ref, value)


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError("must be a non-negative number of seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _paths(text: str) -> tuple[Path, ...]:
    found = tuple(Path(p.strip()) for p in text.split(",") if p.strip())
    for path in found:
        if not path.is_absolute():
            raise ValueError(f"{str(path)!r} is not an absolute directory")
    return found


def _optional_text(text: str) -> str | None:
    return text or None


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "ttl": _seconds,
    "file_roots": _paths,
    "vault_addr": _optional_text,
    "vault_token": _optional_text,
    "vault_token_file": _optional_path,
    "vault_namespace": _optional_text,
    "vault_ca_file": _optional_path,
    "vault_timeout": _positive_seconds,
}


@dataclass(frozen=True, slots=True)
class SecretsSettings:
    """How references are resolved. Nothing here is needed for ``file:`` and ``env:``."""

    #: Seconds a secret read is reused; a rotated secret takes effect within this time. 0 reads
    #: the store every time the secret is used.
    ttl: float = 30.0
    #: When set, ``file:`` references may only name files under these directories.
    file_roots: tuple[Path, ...] = ()
    #: Vault (or OpenBao) address, ``https://vault.example.com:8200``.
    vault_addr: str | None = None
    #: A token (prefer ``vault_token_file``: variables leak into process listings).
    vault_token: str | None = dataclasses.field(default=None, repr=False)
    vault_token_file: Path | None = None
    #: Vault Enterprise / OpenBao namespace.
    vault_namespace: str | None = None
    #: CA bundle (PEM) that signed Vault's certificate; None: the system's.
    vault_ca_file: Path | None = None
    #: Seconds one request to Vault may take.
    vault_timeout: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SecretsSettings:
        """Defaults, then ``VAULT_*``, then ``ACGS_SECRETS_*``/``ACGS_VAULT_*``, then
        ``overrides``. A malformed variable raises ``ValueError`` naming it."""
        env = os.environ if environ is None else environ
        values = read_env(_VAULT_FALLBACKS, _PARSERS, env)
        values.update(read_env(ENV_NAMES, _PARSERS, env))
        values.update(overrides)
        return cls(**values)


class SecretResolver:
    """Resolves setting values: a reference is read from its provider (and kept ``ttl``
    seconds), a plain value is returned as it is. Thread-safe."""

    def __init__(
        self,
        settings: SecretsSettings | None = None,
        *,
        providers: Mapping[str, SecretsProvider] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or SecretsSettings()
        self._providers: dict[str, SecretsProvider] = {
            "file": FileSecrets(self.settings.file_roots),
            "env": EnvSecrets(),
            "vault": VaultSecrets(self.settings),
        }
        self._providers.update(providers or {})
        self._clock = clock
        self._cache: dict[SecretRef, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretResolver(ttl={self.settings.ttl!r}, cached={len(self._cache)})"

    def read(self, ref: SecretRef, *, fresh: bool = False) -> str:
        """The secret ``ref`` names: from the cache when read less than ``ttl`` seconds ago
        (unless ``fresh``), else from its provider."""
        now = self._clock()
        if not fresh and self.settings.ttl > 0:
            with self._lock:
                hit = self._cache.get(ref)
            if hit is not None and now - hit[1] < self.settings.ttl:
                return hit[0]
        value = self._providers[ref.scheme].read(ref)
        if self.settings.ttl > 0:
            with self._lock:
                self._cache[ref] = (value, now)
        return value

    def resolve(self, value: str, *, fresh: bool = False) -> str:
        """``value`` itself when it is a plain value, else the secret it refers to. The secret is
        never resolved again (a secret that looks like a reference stays what it is)."""
        ref = parse_reference(value)
        return value if ref is None else self.read(ref, fresh=fresh)

    def resolve_url(self, url: str, *, fresh: bool = False) -> str:
        """A database or Redis URL: a whole reference, or a URL whose password is ``{reference}``
        (the secret is percent-encoded into place); any other URL as it is."""
        match = _URL_PASSWORD.match(url)
        if match is None:
            return self.resolve(url, fresh=fresh)
        ref = parse_reference(match["ref"])
        if ref is None:
            return url  # a password that happens to be in braces, not a reference
        return f"{match['head']}{quote(self.read(ref, fresh=fresh), safe='')}{match['tail']}"

    def forget(self, value: str) -> None:
        """Drops what is cached for ``value``'s reference: the next use reads the store."""
        ref = parse_reference(value) if value else None
        if ref is not None:
            with self._lock:
                self._cache.pop(ref, None)


_default: tuple[tuple[str | None, ...], SecretResolver] | None = None
_default_lock = threading.Lock()


def default_resolver() -> SecretResolver:
    """The process's resolver, built from ``ACGS_SECRETS_*``/``ACGS_VAULT_*``; built again when
    those variables change (tests and embedding applications set them at run time)."""
    global _default
    key = tuple(os.environ.get(v) for v in (*ENV_NAMES.values(), *_VAULT_FALLBACKS.values()))
    with _default_lock:
        if _default is None or _default[0] != key:
            _default = (key, SecretResolver(SecretsSettings.from_env()))
        return _default[1]


def resolve(value: str) -> str:
    """``value`` resolved by the process's resolver (see :meth:`SecretResolver.resolve`)."""
    return default_resolver().resolve(value)


def resolve_url(url: str) -> str:
    """``url`` resolved by the process's resolver (see :meth:`SecretResolver.resolve_url`)."""
    return default_resolver().resolve_url(url)


def resolve_optional_url(url: str | None) -> str | None:
    """For settings parsers: an unset or empty URL stays None."""
    return resolve_url(url) if url else None
