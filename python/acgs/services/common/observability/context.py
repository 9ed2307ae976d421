"""The request a log line belongs to: a context variable holding the service, the request id
and, once the policy service has made one, the decision id.

One ``ContextVar`` holds one small mutable object, so a request pays one ``set`` at its start
and the decision id is an attribute write, not a second context switch."""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from typing import Any, Final

from acgs.services.common.ids import DecisionIds

#: Longest ``X-Request-ID`` accepted from a client; longer ones are replaced, not truncated,
#: so a log never carries half of someone else's id.
MAX_REQUEST_ID: Final = 128
_VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % MAX_REQUEST_ID)
_HEADER: Final = b"x-request-id"


class RequestContext:
    """One request in flight: what its log lines carry, and what its observer needs at the end
    (one object per request, not two)."""

    __slots__ = ("decision_id", "header", "otel_token", "request_id", "service", "span", "started", "token", "trace_id")

    def __init__(self, service: str, request_id: str) -> None:
        self.service = service
        self.request_id = request_id
        self.decision_id: str | None = None
        self.trace_id: str | None = None
        #: When the request arrived (``time.perf_counter``), set by the observer.
        self.started = 0.0
        #: The response header that echoes the request id.
        self.header = (_HEADER, request_id.encode("ascii"))
        self.token: Token[RequestContext | None] | None = None
        self.span: Any = None
        self.otel_token: object = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("acgs_request", default=None)
_ids = DecisionIds()
_next_id = _ids.next


def current() -> RequestContext | None:
    """The request being served in this task (or thread it handed work to), if any."""
    return _CURRENT.get()


def enter(ctx: RequestContext) -> Token[RequestContext | None]:
    return _CURRENT.set(ctx)


def leave(token: Token[RequestContext | None]) -> None:
    _CURRENT.reset(token)


def note_decision(decision_id: str) -> None:
    """Tags the current request's log lines with the decision it made."""
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.decision_id = decision_id


def new_request_id() -> str:
    return _next_id()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a plausible id (letters, digits, ``._:-``, at
    most 128 characters), else a new one: a header goes into logs and a response header, so
    nothing else is let through."""
    for name, value in headers:
        if name == _HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return _next_id()
