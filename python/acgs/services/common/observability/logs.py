"""Log formatting for the services: one JSON object per line (or readable text) carrying the
service, the request id and the decision id of the request being served, and
``configure_logging``, called once at start-up."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final, TextIO

import orjson

from acgs.services.common.observability.context import current
from acgs.services.common.observability.settings import ObservabilitySettings

_SERVICES_PREFIX: Final = "acgs.services."
#: Loggers of the ASGI server, which keeps its own handlers unless told otherwise.
_SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _service_of(record: logging.LogRecord, default: str) -> str:
    ctx = current()
    if ctx is not None:
        return ctx.service
    name = record.name
    if name.startswith(_SERVICES_PREFIX):
        return name[len(_SERVICES_PREFIX) :].split(".", 1)[0]
    return default


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "service", "request_id", "decision_id",
    "trace_id", "exception", ...}``: the ids only when set; fields passed as
    ``extra={"fields": {...}}`` are added as they are."""

    def __init__(self, default_service: str = "acgs") -> None:
        super().__init__()
        self.default_service = default_service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "service": _service_of(record, self.default_service),
        }
        ctx = current()
        if ctx is not None:
            out["request_id"] = ctx.request_id
            if ctx.decision_id is not None:
                out["decision_id"] = ctx.decision_id
            if ctx.trace_id is not None:
                out["trace_id"] = ctx.trace_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger [service request_id decision_id]: message``."""

    def __init__(self, default_service: str = "acgs") -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(acgs_tags)s: %(message)s")
        self.default_service = default_service

    def format(self, record: logging.LogRecord) -> str:
        tags = [_service_of(record, self.default_service)]
        ctx = current()
        if ctx is not None:
            tags.append(f"request_id={ctx.request_id}")
            if ctx.decision_id is not None:
                tags.append(f"decision_id={ctx.decision_id}")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            tags.extend(f"{k}={v}" for k, v in fields.items())
        record.acgs_tags = " [" + " ".join(tags) + "]"
        return super().format(record)


class _AcgsHandler(logging.StreamHandler[TextIO]):
    """Marks the handler ``configure_logging`` installed, so a second call replaces it."""


def configure_logging(settings: ObservabilitySettings | None = None, stream: TextIO | None = None) -> logging.Handler:
    """Sends every log record (the services', the libraries' and uvicorn's) through one handler
    on stderr in the configured format and level. Call it once at start-up, before the server
    starts, and run uvicorn with ``log_config=None`` so it keeps this configuration. Calling it
    again replaces the handler. Returns the handler."""
    settings = settings or ObservabilitySettings.from_env()
    handler = _AcgsHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AcgsHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    for name in _SERVER_LOGGERS:
        server_log = logging.getLogger(name)
        server_log.handlers.clear()
        server_log.propagate = True
    return handler
