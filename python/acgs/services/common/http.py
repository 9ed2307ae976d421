"""Request body reading with a size cap (plain and gzip), query flags, and JSON responses built
from bytes, so handlers on the hot path skip Starlette's and FastAPI's generic machinery."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from acgs.services.common.errors import INVALID_PARAMETER, ServiceError

JSON = "application/json"
_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def too_large(limit: int) -> ServiceError:
    return ServiceError(413, INVALID_PARAMETER, f"request body too large (limit {limit} bytes)")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``, refused with 413 past
    ``limit`` bytes. A declared length over the limit is refused before anything is read."""
    gzipped = False
    for name, value in request.scope["headers"]:
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
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
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
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
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

    def __init__(self, request: Request) -> None:
        self.pretty = self.metrics = self.provenance = False
        self.input: str | None = None
        if not request.scope.get("query_string"):
            return
        params = request.query_params
        self.pretty = params.get("pretty", "false").lower() in _TRUE
        self.metrics = params.get("metrics", "false").lower() in _TRUE
        self.provenance = params.get("provenance", "false").lower() in _TRUE
        self.input = params.get("input")


def json_response(content: Any, status: int = 200, pretty: bool = False, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(content, option=_PRETTY) if pretty else orjson.dumps(content)
    return Response(body, status, headers=headers, media_type=JSON)
