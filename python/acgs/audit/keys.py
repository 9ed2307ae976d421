"""The log's checkpoint signing key: from ``ACGS_AUDIT_SIGNING_KEY``, or a file under the data
directory, generated (Ed25519, through the Rust core) on first start with mode 0600."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from acgs import _acgs as core
from acgs.errors import SigningKeyError

ENV_KEY = "ACGS_AUDIT_SIGNING_KEY"
KEY_FILE = "audit-signing.key"
DEFAULT_ORIGIN = "acgs.local/audit"


def key_name(private_key: str) -> str:
    """The name inside ``PRIVATE+KEY+<name>+<id>+<key>``."""
    parts = private_key.strip().split("+", 4)  # the base64 key may itself hold "+"
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not parts[2]:
        raise SigningKeyError("not a signing key (expected PRIVATE+KEY+<name>+<id>+<key>)")
    return parts[2]


def load_or_create(data_dir: Path, origin: str = DEFAULT_ORIGIN, environ: Mapping[str, str] | None = None) -> str:
    """The private key string. The environment wins; otherwise ``<data_dir>/audit-signing.key``,
    created atomically if absent, so processes starting together agree on one key."""
    env = os.environ if environ is None else environ
    text = env.get(ENV_KEY, "").strip()
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
