"""The log's checkpoint signing key: from ``ACGS_AUDIT_SIGNING_KEY``, or a file under the data
directory, generated (Ed25519, through the Rust core) on first start with mode 0600. Also the
verifier key ``acgs audit verify`` pins: read from a file (a verifier key, or the signing key it
derives from), never from the database it checks.

``ACGS_AUDIT_SIGNING_KEY`` may hold the key or a reference into a secrets store (``file:``,
``env:``, ``vault:``; see ``acgs.security.secrets``): a reference that cannot be read raises
``SecretError`` and the log is not opened (no key is generated in its place)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from acgs import _acgs as core
from acgs.errors import SigningKeyError

ENV_KEY = "ACGS_AUDIT_SIGNING_KEY"
KEY_FILE = "audit-signing.key"
#: The latest checkpoint the log signed, kept beside the key, outside the database.
WITNESS_FILE = "audit-checkpoint.note"
DEFAULT_ORIGIN = "acgs.local/audit"


def key_id(verifier_key: str) -> str:
    """The published key id (8 hex digits) inside ``<name>+<id>+<key>``."""
    parts = verifier_key.strip().split("+", 2)
    if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
        raise SigningKeyError("not a verifier key (expected <name>+<key id>+<key>)")
    return parts[1].lower()


def verifier_from_text(text: str, origin: str | None = None) -> str:
    """The verifier key a key file holds: a verifier key as is, or the one a signing key
    (``PRIVATE+KEY+...``) derives."""
    text = text.strip()
    if text.startswith("PRIVATE+KEY+"):
        name = key_name(text)
        verifier: str = core.Checkpointer(text, origin or name).verifier_key
        return verifier
    key_id(text)
    return text


def pinned_verifier(key_file: Path | None, data_dir: Path, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The verifier key to hold a log to, and where it came from: ``key_file``, else
    ``ACGS_AUDIT_SIGNING_KEY``, else ``<data_dir>/audit-signing.key``. Never creates a key:
    ``SigningKeyError`` when there is none."""
    if key_file is not None:
        try:
            return verifier_from_text(Path(key_file).read_text()), str(key_file)
        except OSError as exc:
            raise SigningKeyError(f"cannot read the key file {key_file}: {exc}") from None
    text = _from_env(environ)
    if text:
        return verifier_from_text(text), ENV_KEY
    path = data_dir / KEY_FILE
    if not path.exists():
        raise SigningKeyError(f"no key to verify with: {path} does not exist; pass --key FILE (the log's verifier key)")
    return verifier_from_text(path.read_text()), str(path)


def _from_env(environ: Mapping[str, str] | None) -> str:
    """``ACGS_AUDIT_SIGNING_KEY``, a secrets-store reference in it resolved; "" when unset."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_KEY, "").strip()
    if not text:
        return ""
    from acgs.security.secrets import resolve  # imported late: the audit core needs no services

    return resolve(text).strip()


def key_name(private_key: str) -> str:
    """The name inside ``PRIVATE+KEY+<name>+<id>+<key>``."""
    parts = private_key.strip().split("+", 4)  # the base64 key may itself hold "+"
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not parts[2]:
        raise SigningKeyError("not a signing key (expected PRIVATE+KEY+<name>+<id>+<key>)")
    return parts[2]


def load_or_create(data_dir: Path, origin: str = DEFAULT_ORIGIN, environ: Mapping[str, str] | None = None) -> str:
    """The private key string. The environment wins; otherwise ``<data_dir>/audit-signing.key``,
    created atomically if absent, so processes starting together agree on one key."""
    text = _from_env(environ)
    if text:
        key_name(text)
        return text
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        private, _verifier = core.generate_signing_key(origin)
        # Written whole under a private name, then linked into place: a reader never sees a
        # half-written key, and of two processes starting together exactly one key wins.
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    if not text:
        raise SigningKeyError(f"{path} is empty")
    key_name(text)
    return text
