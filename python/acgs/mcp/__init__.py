"""ACGS in front of MCP servers: ``make_proxy`` builds an MCP server that relays one upstream
MCP server's tools, resources and prompts with every ``tools/call``, ``resources/read`` and
``prompts/get`` decided by an ``acgs.Guard``, one guard per MCP client session, and the
upstream's sampling and elicitation requests relayed to the client whose call asks (``acgs mcp
proxy``; see README.md). Needs the ``mcp`` extra; importing this package alone (as the ``acgs``
command does) loads nothing of the MCP SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acgs.mcp.proxy import make_proxy, never_allowed

__all__ = ["make_proxy", "never_allowed"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from acgs.mcp import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module 'acgs.mcp' has no attribute {name!r}")
