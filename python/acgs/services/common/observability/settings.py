"""Settings of logging, request ids and tracing, shared by every service: one frozen object
read from ``ACGS_*`` environment variables."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from acgs.services.common.env import read_env

#: Environment variable for each setting. ``ACGS_LOG_LEVEL`` is the one the services' own
#: settings already read.
ENV_NAMES: dict[str, str] = {
    "log_format": "ACGS_LOG_FORMAT",
    "log_level": "ACGS_LOG_LEVEL",
    "access_log": "ACGS_ACCESS_LOG",
    "otel_enabled": "ACGS_OTEL_ENABLED",
    "otel_endpoint": "ACGS_OTEL_ENDPOINT",
    "otel_service_prefix": "ACGS_OTEL_SERVICE_PREFIX",
}

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
#: uvicorn's level below debug, which ``logging`` knows only once uvicorn has named it.
TRACE = 5
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("", "0", "false", "no", "off"))


def _log_format(text: str) -> str:
    value = text.lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}")
    return value


def _log_level(text: str) -> str:
    value = text.lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return value


def _flag(text: str) -> bool:
    value = text.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return text.rstrip("/")


PARSERS: dict[str, Callable[[str], Any]] = {
    "log_format": _log_format,
    "log_level": _log_level,
    "access_log": _flag,
    "otel_enabled": _flag,
    "otel_endpoint": _url,
    "otel_service_prefix": str,
}


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    """How the services log and trace. Metrics need no settings: ``/metrics`` is always on."""

    #: ``text`` (for a terminal) or ``json`` (one object per line, for log shippers).
    log_format: str = "text"
    log_level: str = "info"
    #: One log line per HTTP request (method, path, route, status, duration). Off by default:
    #: on the policy service's decision path a log line costs more than the decision.
    access_log: bool = False
    #: OpenTelemetry traces (a span per request), exported over OTLP/HTTP. Needs the ``otel``
    #: extra (``pip install 'acgs[otel]'``); without it the services run untraced and say so.
    otel_enabled: bool = False
    #: The OTLP/HTTP collector; spans go to ``<endpoint>/v1/traces``.
    otel_endpoint: str = "http://127.0.0.1:4318"
    #: Each service reports as ``<prefix><service>`` (``acgs-policy``, ``acgs-audit``, ...).
    otel_service_prefix: str = "acgs-"

    def __post_init__(self) -> None:
        # Direct construction (tests, acgs.config) gets the same checks as the environment.
        for name in ("log_format", "log_level", "otel_endpoint"):
            try:
                PARSERS[name](getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}={getattr(self, name)!r}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ObservabilitySettings:
        """Defaults, then ``ACGS_*`` variables, then ``overrides``. A malformed variable raises
        ``ValueError`` naming it."""
        values = read_env(ENV_NAMES, PARSERS, environ)
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> ObservabilitySettings:
        return dataclasses.replace(self, **changes)

    @property
    def level(self) -> int:
        """The log level as the ``logging`` module's number."""
        if self.log_level == "trace":
            return TRACE
        return logging.getLevelNamesMapping()[self.log_level.upper()]
