"""``acgs mcp proxy``: an MCP server in front of one upstream MCP server, every ``tools/call``
decided by an ``acgs.Guard`` before it reaches the upstream.

An allowed (or approved) call is forwarded and the upstream's result comes back as it is; a
denied call never reaches the upstream and comes back as a tool error (``is_error``) carrying
the constitution's reasons and the decision id, which the model reads; a call that needs
approval waits for the guard's approver, or, without one, is a tool error saying approval is
required. ``tools/list`` is the upstream's list, less the tools the constitution never allows
(``hide_denied``). Each proxied call is one ``tool_call`` audit event, the guard's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from mcp import Client, MCPError, StdioServerParameters
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)

from acgs.errors import ApprovalRequired, ToolDenied, ToolInputError
from acgs.guard import Guard

log = logging.getLogger("acgs.mcp")

Upstream = StdioServerParameters | str


@dataclass(slots=True)
class _Connection:
    """What the proxy's handlers share while it serves: the client of the upstream."""

    upstream: Client


def _text_error(text: str, decision: Mapping[str, Any] | None = None) -> CallToolResult:
    """A tool error the model reads; ``structured_content`` carries the decision for programs."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"acgs": dict(decision)} if decision is not None else None,
        is_error=True,
    )


def _refusal(exc: ToolDenied | ApprovalRequired) -> CallToolResult:
    decision = exc.decision
    # A reviewer approver that stopped waiting raises ApprovalPending (an ApprovalRequired with
    # the approval request's id): the client may ask again once reviewers approved it.
    request_id = getattr(exc, "request_id", None)
    if request_id is not None:
        text = (
            f"ACGS: tool {decision.tool!r} is waiting for reviewers (decision {decision.decision_id}, "
            f"approval request {request_id}). The call was not made; make the same call again once reviewers approved it."
        )
    elif isinstance(exc, ApprovalRequired):
        why = "; ".join(decision.reasons) or "the constitution requires approval"
        text = (
            f"ACGS: tool {decision.tool!r} requires approval (decision {decision.decision_id}): {why}. "
            "The call was not made."
        )
    elif exc.outcome == "rejected":
        text = f"ACGS: tool {decision.tool!r} was not approved (decision {decision.decision_id}): {exc.message}. The call was not made."
    elif decision.outcome == "deny":
        text = f"ACGS: tool {decision.tool!r} denied (decision {decision.decision_id}): {'; '.join(decision.reasons)}"
    else:
        # Refused on the way to approval (the review service failed): the refusal's own words.
        text = f"ACGS: tool {decision.tool!r} refused (decision {decision.decision_id}): {exc.message}"
    summary = {
        "outcome": "approval_required" if isinstance(exc, ApprovalRequired) else exc.outcome,
        "decision_id": decision.decision_id,
        "tool": decision.tool,
        "reasons": list(decision.reasons),
    }
    if isinstance(exc, ApprovalRequired) and decision.approval is not None:
        summary["approval"] = decision.approval
    if request_id is not None:
        summary["outcome"] = "approval_pending"
        summary["approval_request"] = {"request_id": request_id, "url": getattr(exc, "url", None)}
    return _text_error(text, summary)


# -- which tools the constitution never allows ------------------------------------------------


def _canonical(name: str) -> str:
    # As the constitution's lib.action_name: surrounding ASCII white space trimmed, A-Z lowered.
    return name.strip(" \t\r\n").translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _in_grammar(name: str, grammar: Mapping[str, Any]) -> bool:
    try:
        if len(name) > grammar["max_length"]:
            return False
        dotted = name
        for sep in grammar["separators"]:
            dotted = dotted.replace(sep, ".")
        allowed = set(grammar["characters"]) | {"."}
    except (KeyError, TypeError):
        return True  # a grammar this code cannot read: leave the call to the guard
    return (
        dotted != ""
        and set(dotted) <= allowed
        and not dotted.startswith(".")
        and not dotted.endswith(".")
        and ".." not in dotted
    )


def never_allowed(tools: Mapping[str, Any], name: str) -> bool:
    """Whether the constitution's tool data (``data.acgs.constitution.tools``) denies every call
    of ``name`` whatever its arguments: a name outside the tool-name grammar, a catalogue entry
    whose outcome is ``deny``, or a tool not in the catalogue when the default is ``deny``.
    Hiding is a courtesy to the model; the guard still decides every call."""
    canonical = _canonical(name)
    grammar = tools.get("name_grammar")
    if isinstance(grammar, Mapping) and not _in_grammar(canonical, grammar):
        return True
    catalogue = tools.get("catalogue")
    entry = catalogue.get(canonical) if isinstance(catalogue, Mapping) else None
    if entry is None:
        entry = tools.get("default")
    return isinstance(entry, Mapping) and entry.get("outcome") == "deny"


async def _tool_data(guard: Guard) -> Mapping[str, Any] | None:
    """The constitution's tool data: the embedded engine's, or the policy service's (OPA Data
    API); None when it cannot be had (then nothing is hidden)."""
    if guard.engine is not None:
        try:
            data = guard.engine.data["acgs"]["constitution"]["tools"]
        except (KeyError, TypeError, AttributeError):
            return None
        return data if isinstance(data, Mapping) else None
    headers = {k: v for k, v in guard._headers.items() if k == "Authorization"}  # noqa: SLF001 - the guard's credential
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(f"{guard.url}/v1/data/acgs/constitution/tools", headers=headers)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("mcp proxy: the constitution's tool data could not be read (%s); no tool is hidden", exc)
        return None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, Mapping):
        log.warning("mcp proxy: the policy service returned no tool data; no tool is hidden")
        return None
    return result


def _call_key(tool: str, arguments: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """The call as a key for its pending approval; None for arguments orjson cannot write (the
    guard refuses those anyway)."""
    try:
        return tool, orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


# -- the server ------------------------------------------------------------------------------


def make_proxy(upstream: Upstream, guard: Guard, *, hide_denied: bool = True, name: str = "acgs-mcp-proxy") -> Server[Any]:
    """An MCP server (low-level ``mcp.server.Server``) fronting ``upstream`` (a
    ``StdioServerParameters`` to launch, or the URL of a Streamable HTTP server) with ``guard``
    deciding every ``tools/call``. The upstream is connected when the server starts serving
    (per connection over stdio, once for Streamable HTTP) and closed when it stops."""
    if not isinstance(upstream, StdioServerParameters | str):
        raise TypeError(f"upstream must be StdioServerParameters or a URL, not {type(upstream).__name__}")
    #: The constitution's tool data, read on the first listing (a list: set once, from a handler).
    tool_data: list[Mapping[str, Any] | None] = []
    #: Approval requests still pending, by (tool, arguments as JSON): the same call asked again
    #: resumes its request (runs once approved) instead of opening another.
    pending: dict[tuple[str, bytes], str] = {}

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[_Connection]:
        # No response cache: tools/list is asked of the upstream each time.
        async with Client(upstream, cache=None) as client:
            yield _Connection(client)

    async def list_tools(ctx: ServerRequestContext[_Connection], params: PaginatedRequestParams | None) -> ListToolsResult:
        cursor = params.cursor if params is not None else None
        listing = await ctx.lifespan_context.upstream.list_tools(cursor=cursor)
        if not hide_denied:
            return listing
        if not tool_data:
            tool_data.append(await _tool_data(guard))
        data = tool_data[0]
        if data is None:
            return listing
        shown = [t for t in listing.tools if not never_allowed(data, t.name)]
        return listing.model_copy(update={"tools": shown})

    async def call_tool(ctx: ServerRequestContext[_Connection], params: CallToolRequestParams) -> CallToolResult:
        tool = params.name
        arguments: dict[str, Any] = dict(params.arguments) if params.arguments else {}
        upstream_client = ctx.lifespan_context.upstream
        forwarded = False

        async def forward() -> dict[str, Any]:
            nonlocal forwarded
            forwarded = True
            result = await upstream_client.call_tool(tool, arguments)
            # As JSON, so that the guard's audit event carries the result's digest.
            return result.model_dump(mode="json", by_alias=True, exclude_none=True)

        key = _call_key(tool, arguments)
        request_id = pending.pop(key, None) if key is not None else None
        try:
            if request_id is not None:
                dumped = await guard.aresume(request_id, tool, arguments, forward)
            else:
                dumped = await guard.acall(tool, arguments, forward)
        except (ToolDenied, ApprovalRequired) as exc:
            still = getattr(exc, "request_id", None)
            if still is not None and key is not None:
                pending[key] = still
            return _refusal(exc)
        except ToolInputError as exc:
            summary = {"outcome": "deny", "tool": tool, "decision_id": exc.decision_id, "reasons": [exc.message]}
            return _text_error(f"ACGS: tool {tool!r} refused (decision {exc.decision_id}): {exc.message}", summary)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                # Not the client's connection: say whose, so it is not mistaken for the proxy's.
                raise MCPError(INTERNAL_ERROR, "the upstream MCP server closed the connection") from None
            raise  # the upstream's protocol error (unknown tool, bad params) as it sent it
        except Exception as exc:
            if not forwarded:
                # The approver failed: the guard audited the call as rejected; it was not made.
                log.warning("mcp proxy: the approver failed on %r: %s", tool, exc)
                return _text_error(f"ACGS: tool {tool!r} was not approved: the approver failed: {type(exc).__name__}: {exc}")
            log.warning("mcp proxy: the upstream failed on %r: %s", tool, exc)
            raise MCPError(INTERNAL_ERROR, f"the upstream MCP server failed: {type(exc).__name__}: {exc}") from None
        return CallToolResult.model_validate(dumped)

    return Server(name, lifespan=lifespan, on_list_tools=list_tools, on_call_tool=call_tool)
