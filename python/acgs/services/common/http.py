"""Request body reading with a size cap (plain and gzip), query flags, and JSON responses built
from bytes, so handlers on the hot path skip Starlette's and FastAPI's generic machinery; an
evaluator's result carried into a response with its numbers as the evaluator wrote them."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from acgs._acgs import exact_json
from acgs.errors import InvalidInputError
from acgs.services.common.errors import INVALID_PARAMETER, ServiceError

JSON = "application/json"
_JSON_BYTES = JSON.encode()
_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def too_large(limit: int) -> ServiceError:
    return ServiceError(413, INVALID_PARAMETER, f"request body too large (limit {limit} bytes)")


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``, refused with 413 past
    ``limit`` bytes. A declared length over the limit is refused before anything is read."""
    gzipped = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise ServiceError.bad_request("malformed Content-Length") from None
            if declared > limit:
                raise too_large(limit)
        elif name == b"content-encoding":
            encoding = value.strip().lower()
            if encoding == b"gzip":
                gzipped = True
            elif encoding not in (b"", b"identity"):
                raise ServiceError(415, INVALID_PARAMETER, f"unsupported Content-Encoding {value.decode('latin-1')!r}")
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        # The common case: the whole body in one message.
        body: bytes = message.get("body", b"")
        if gzipped and body:
            return _gunzip(body, limit)
        if len(body) > limit:
            raise too_large(limit)
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ServiceError.bad_request("client disconnected before sending the body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            # Compressed data can be slightly larger than what it unpacks to (stored blocks).
            if size > limit + limit // 1000 + 64:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    body = b"".join(chunks)
    if gzipped and body:
        return _gunzip(body, limit)
    if len(body) > limit:
        raise too_large(limit)
    return body


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ServiceError.bad_request(f"malformed gzip body: {exc}") from None
    if len(out) > limit:
        raise too_large(limit)
    if not inflater.eof:
        raise ServiceError.bad_request("malformed gzip body: truncated")
    return out


def parse_json(raw: bytes, what: str = "request body") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ServiceError.bad_request(f"{what} is not valid JSON: {exc}") from None


_TRUE = frozenset(("", "true", "1", "yes", "on"))


class QueryFlags:
    """OPA's boolean query parameters (``?pretty``, ``?metrics``, ``?provenance``) and ``input``.
    Parsed only when the request has a query string."""

    __slots__ = ("input", "metrics", "pretty", "provenance")

    def __init__(self, query: bytes = b"") -> None:
        self.pretty = self.metrics = self.provenance = False
        self.input: str | None = None
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name == "input":
                self.input = value
            elif name in ("pretty", "metrics", "provenance"):
                setattr(self, name, value.lower() in _TRUE)


_NO_FLAGS = QueryFlags()


def query_flags(scope: Scope) -> QueryFlags:
    """The request's flags; requests without a query string share one instance."""
    query: bytes = scope.get("query_string", b"")
    return QueryFlags(query) if query else _NO_FLAGS


class Reply:
    """A response as status, body and headers: sent as two ASGI messages on the hot path,
    turned into a Starlette ``Response`` for FastAPI routes."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self, body: bytes, status: int = 200, content_type: str = JSON, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = headers

    def response(self) -> Response:
        return Response(self.body, self.status, headers=self.headers, media_type=self.content_type)

    async def send(self, send: Send, extra: tuple[bytes, bytes] | None = None) -> None:
        """Sends the response; ``extra`` is one more header (the request id)."""
        headers = [
            (b"content-type", _JSON_BYTES if self.content_type is JSON else self.content_type.encode("latin-1")),
            (b"content-length", str(len(self.body)).encode("latin-1")),
        ]
        if self.headers:
            headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        if extra is not None:
            headers.append(extra)
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def load_wide(raw: bytes | str) -> Any:
    """JSON text as Python values, numbers past a double's range included. orjson refuses such a
    number (``1e400``), which JSON allows and policies read exactly, so such text is read by the
    standard library instead: the number becomes ``inf`` in the Python value only (the exact
    text travels on its own: ``exact_json``, ``exact_result``). Raises ``ValueError`` (or
    ``RecursionError``) for text neither reads."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


#: A number a double might not write back as spelt: an exponent, or a long run of digits
#: (strings that match only cost the exact path, never a wrong answer).
_INEXACT = re.compile(rb"[0-9][eE][-+]?[0-9]|[0-9]{16}")


def exact_result(result_set: bytes) -> orjson.Fragment | None:
    """The ``result`` of an evaluator's result set (``[{"result": ...}]``, as
    ``Engine.evaluate_json`` gives it) as JSON with every number as the evaluator wrote it
    (keys sorted), to put in a response in place of the Python value, which orjson would write
    as doubles (``10.000000000000000001`` -> ``10.0``). None when the set is not exactly one
    result. Also None, at the cost of one scan, when no number in the set is spelt in a way a
    double could change (an exponent, or more than 15 digits in a row): then the Python value
    writes the same numbers."""
    if result_set[:1] != b"[" or result_set[-1:] != b"]" or _INEXACT.search(result_set) is None:
        return None
    try:
        text = exact_json(result_set[1:-1], "result")
    except InvalidInputError:  # no result, or more than one
        return None
    return None if text is None else orjson.Fragment(text)


def json_reply(content: Any, status: int = 200, pretty: bool = False, headers: dict[str, str] | None = None) -> Reply:
    body = orjson.dumps(content, option=_PRETTY) if pretty else orjson.dumps(content)
    return Reply(body, status, JSON, headers)


def json_response(content: Any, status: int = 200, pretty: bool = False, headers: dict[str, str] | None = None) -> Response:
    return json_reply(content, status, pretty, headers).response()
