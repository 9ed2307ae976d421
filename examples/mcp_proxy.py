"""``acgs mcp proxy`` in front of an MCP server (mcp_server.py), reached by the official MCP
SDK's client as any agent would reach it: every ``tools/call`` is decided by the constitution
before it gets to the server. A denied call is an MCP tool error carrying the reasons.

The same from a shell, for an MCP client's configuration:
    acgs mcp proxy --upstream-command "python examples/mcp_server.py"
"""

import shlex
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

upstream = shlex.join([sys.executable, str(Path(__file__).with_name("mcp_server.py"))])
proxy = StdioServerParameters(command=sys.executable, args=["-m", "acgs", "mcp", "proxy", "--upstream-command", upstream])


async def main() -> None:
    async with Client(proxy) as client:
        tools = await client.list_tools()
        print("tools:", [tool.name for tool in tools.tools])  # db.drop_table: hidden, never allowed
        for name, arguments in [("read_file", {"path": "/workspace/notes.txt"}), ("db.drop_table", {"table": "users"})]:
            result = await client.call_tool(name, arguments)
            print(f"{name}:", "error:" if result.is_error else "ok:", result.content[0].text)


anyio.run(main)
