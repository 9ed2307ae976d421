"""Serving the proxy: over this process's stdin and stdout, or over Streamable HTTP at
``http://HOST:PORT/mcp`` (loopback unless asked otherwise)."""

from __future__ import annotations

import ipaddress
from typing import Any

import uvicorn
from mcp.server import Server
from mcp.server.stdio import stdio_server

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


def http_server(server: Server[Any], host: str = "127.0.0.1", port: int = 0) -> uvicorn.Server:
    """A uvicorn server for the proxy over Streamable HTTP (``await .serve()`` to run it; its
    ``started`` turns true once it listens). On loopback the SDK's DNS-rebinding protection
    is on (only loopback Host and Origin headers are accepted)."""
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
    return uvicorn.Server(config)


def bound_port(server: uvicorn.Server) -> int:
    """The port a started uvicorn server listens on (useful after asking for port 0)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("the server is not listening")
