"""Serving the proxy: over this process's stdin and stdout, or over Streamable HTTP at
``http://HOST:PORT/mcp`` (loopback unless asked otherwise)."""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson
import uvicorn
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.types import UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Receive, Scope, Send

MCP_PATH = "/mcp"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (on 127.0.0.1); ``ValueError`` otherwise."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT or PORT") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--listen {value!r}: port out of range")
    return host, port


async def serve_stdio(server: Server[Any]) -> None:
    """Serves one MCP client on this process's stdin and stdout until it closes them."""
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


class SessionsOnly:
    """ASGI: answers a request of a protocol version without sessions (2026-07-28: no
    initialize, no ``Mcp-Session-Id``) with the JSON-RPC error -32022 naming the handshake
    versions, so an SDK client in ``auto`` mode falls back to the initialize handshake, whose
    sessions keep one client's history apart from another's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            version = next((v for k, v in scope["headers"] if k == b"mcp-protocol-version"), None)
            requested = version.decode("latin-1") if version is not None else None
            if requested is not None and requested not in HANDSHAKE_PROTOCOL_VERSIONS:
                body = orjson.dumps({
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": UNSUPPORTED_PROTOCOL_VERSION,
                        "message": "this ACGS proxy keeps a session per client: connect with the initialize handshake",
                        "data": {"supported": list(HANDSHAKE_PROTOCOL_VERSIONS), "requested": requested[:64]},
                    },
                })  # fmt: skip
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 400, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_server(server: Server[Any], host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """A uvicorn server for the proxy over Streamable HTTP (``await .serve()`` to run it; its
    ``started`` turns true once it listens). On loopback the SDK's DNS-rebinding protection
    is on (only loopback Host and Origin headers are accepted). Only the protocol versions
    with sessions are served (``SessionsOnly``)."""
    app = SessionsOnly(server.streamable_http_app(streamable_http_path=MCP_PATH, host=host))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started uvicorn server listens on (useful after asking for port 0)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server is not listening")
