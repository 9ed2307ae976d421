# helper: the upstream MCP server of mcp_proxy.py, not an example on its own
"""A tiny MCP server (stdio), built with the official MCP SDK's ``MCPServer`` (FastMCP in mcp 1.x):
the upstream that ``acgs mcp proxy`` fronts in mcp_proxy.py.

    python examples/mcp_server.py
"""

from mcp.server import MCPServer

server = MCPServer("files")


@server.tool()
def read_file(path: str) -> str:
    """Reads a file of the workspace."""
    return f"contents of {path}"


@server.tool(name="db.drop_table")
def drop_table(table: str) -> str:
    """Drops a database table."""
    return f"dropped {table}"


if __name__ == "__main__":
    server.run("stdio")
