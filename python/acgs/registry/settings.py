"""Settings of the agent registry: where it lives and how often the services reload it.
Read from ``ACGS_*`` variables, or the ``[agent_registry]`` table of the configuration file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acgs.registry.store import default_url
from acgs.security.secrets import is_reference, resolve_url
from acgs.services.common.env import non_negative_float, read_env

ENV_NAMES: dict[str, str] = {
    "data_dir": "ACGS_DATA_DIR",
    "url": "ACGS_AGENT_REGISTRY",
    "refresh": "ACGS_AGENT_REGISTRY_REFRESH",
}

_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def _url(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(_SCHEMES):
        raise ValueError("use sqlite:///path or postgresql://...")
    return text


_PARSERS: dict[str, Callable[[str], Any]] = {
    "data_dir": Path,
    "url": _url,
    "refresh": non_negative_float,
}


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """The agent registry: SQLite under the data directory unless a URL names another store."""

    #: Where the default store lives (``agents.sqlite3``).
    data_dir: Path = Path(".acgs-data")
    #: ``sqlite:///path`` or ``postgresql://...`` (nodes sharing it share agents); None:
    #: SQLite under ``data_dir``.
    url: str | None = None
    #: Seconds between reloads of the registry into each service's memory: a change reaches
    #: every node within this time. 0 reloads before every read (tests only).
    refresh: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RegistrySettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``; a malformed value raises
        ``ValueError`` naming its variable."""
        values = read_env(ENV_NAMES, _PARSERS, environ)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.url is not None and not is_reference(self.url) and not self.url.startswith(_SCHEMES):
            raise ValueError(f"ACGS_AGENT_REGISTRY={self.url!r}: use sqlite:///path or postgresql://...")
        if not self.refresh >= 0:
            raise ValueError(f"ACGS_AGENT_REGISTRY_REFRESH={self.refresh!r}: must not be negative")

    def replace(self, **changes: Any) -> RegistrySettings:
        return dataclasses.replace(self, **changes)

    def resolved_url(self) -> str:
        """The registry's URL, a secrets reference in it (or in its password) read now."""
        return resolve_url(self.url) if self.url else default_url(self.data_dir)

    def public(self) -> dict[str, Any]:
        """JSON-ready values, a password in the URL masked."""
        url = self.url
        if url and "@" in url:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return {"data_dir": str(self.data_dir), "url": url, "refresh": self.refresh}
