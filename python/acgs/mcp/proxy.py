"""``acgs mcp proxy``: an MCP server in front of one upstream MCP server, every ``tools/call``
(and every ``resources/read`` and ``prompts/get``) decided by an ``acgs.Guard`` before it reaches
the upstream.

An allowed (or approved) call is forwarded and the upstream's result comes back as it is; a
denied call never reaches the upstream and comes back as a tool error (``is_error``) carrying
the constitution's reasons and the decision id, which the model reads; a call that needs
approval waits for the guard's approver, or, without one, is a tool error saying approval is
required. ``tools/list`` is the upstream's list, less the tools the constitution never allows
(``hide_denied``). Each proxied call is one ``tool_call`` audit event, the guard's.

Each MCP client session has a session of its own (a guard: session id, history, pending
approvals), so one client's calls never count in another's session rules: a stdio proxy (or an
in-process client) has one client; over Streamable HTTP each ``Mcp-Session-Id`` is one.

Sampling (``sampling/createMessage``) and elicitation (``elicitation/create``) the upstream asks
for while it serves a forwarded call are relayed to the client whose call it is, on that call's
own stream, and the client's answer goes back to the upstream. The upstream connection is one
for all clients, so a request is relayed only when it can be tied to the call it belongs to:
over the 2026-07-28 protocol with the upstream the SDK carries such requests inside the call's
own exchange (an ``InputRequiredResult``), which ties them. Otherwise (an upstream on an older
protocol sends them as requests of their own, which name no call), or when the client does not
offer the capability or cannot take requests from the server, an MCP error names what was
refused and why (to the upstream, or as the failure of the client's call), never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
import orjson
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.context import ClientRequestContext
from mcp.server import MCPServer, Server
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    CallToolResult,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    ElicitRequest,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    GetPromptRequestParams,
    GetPromptResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
)

from acgs.errors import ApprovalRequired, ToolDenied, ToolInputError
from acgs.guard import Guard

log = logging.getLogger("acgs.mcp")

#: What the proxy fronts: a server to launch over stdio, the URL of a Streamable HTTP server, or
#: an MCP server object in this process.
Upstream = StdioServerParameters | str | Server[Any] | MCPServer
#: Makes the guard of one MCP client session, given the transport's id for it (``Mcp-Session-Id``
#: over Streamable HTTP; None for the one client of a stdio or in-process connection). The
#: guards of one proxy should share an engine (or policy service) and an audit trail
#: (``Guard(..., audit=first.audit)``); the agent id is the operator's to set, never the client's.
GuardFactory = Callable[[str | None], Guard]

#: The names a resource read and a prompt fetch are decided under (arguments ``{"uri"}`` and
#: ``{"name", "arguments"}``): not in the shipped catalogue, so the constitution's default
#: applies unless an operator adds them (README.md).
RESOURCE_READ = "mcp.resources.read"
PROMPT_GET = "mcp.prompts.get"

#: Pending approval requests a session remembers (the oldest forgotten first: such a call made
#: again opens a new request).
PENDING_MAX = 256


@dataclass(slots=True)
class _Session:
    """One MCP client session: its guard, and its calls waiting for reviewers."""

    guard: Guard
    #: Made by the proxy's factory: closed when the session ends.
    owned: bool
    #: Approval requests still pending, by (tool, arguments as JSON): the same call asked again
    #: resumes its request (runs once approved) instead of opening another.
    pending: dict[tuple[str, bytes], str] = field(default_factory=dict)


@dataclass(slots=True)
class _Connection:
    """What the proxy's handlers share while it serves: the client of the upstream and the
    sessions of the MCP clients served so far (by transport session id)."""

    upstream: Client
    sessions: dict[str | None, _Session] = field(default_factory=dict)


class _Refused(Exception):
    """A call the guard did not let through: the text a model reads and the summary a program
    reads (``{"acgs": ...}``)."""

    def __init__(self, text: str, summary: Mapping[str, Any] | None) -> None:
        super().__init__(text)
        self.text, self.summary = text, summary


def _text_error(text: str, decision: Mapping[str, Any] | None = None) -> CallToolResult:
    """A tool error the model reads; ``structured_content`` carries the decision for programs."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"acgs": dict(decision)} if decision is not None else None,
        is_error=True,
    )


def _refusal(exc: ToolDenied | ApprovalRequired) -> _Refused:
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
    return _Refused(text, summary)


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


async def _tool_data(guard: Guard, api_key: str | None) -> Mapping[str, Any] | None:
    """The constitution's tool data: the guard's embedded engine's, or its policy service's (OPA
    Data API, with ``api_key``); None when it cannot be had (then nothing is hidden)."""
    if guard.engine is not None:
        try:
            data = guard.engine.data["acgs"]["constitution"]["tools"]
        except (KeyError, TypeError, AttributeError):
            return None
        return data if isinstance(data, Mapping) else None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(f"{guard.url}/v1/data/acgs/constitution/tools", headers=headers)
        body = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("mcp proxy: the constitution's tool data could not be read (%s); nothing is hidden", exc)
        return None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, Mapping):
        log.warning("mcp proxy: the policy service returned no tool data; nothing is hidden")
        return None
    return result


def _call_key(tool: str, arguments: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """The call as a key for its pending approval; None for arguments orjson cannot write (the
    guard refuses those anyway)."""
    try:
        return tool, orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


# -- sampling and elicitation, relayed to the client whose call asks -----------------------------

#: The client request a forwarded call is made for, while the upstream serves it: where the
#: upstream's sampling and elicitation requests during that call go.
_relaying: ContextVar[ServerRequestContext[Any] | None] = ContextVar("acgs_mcp_relaying", default=None)

_Answer = TypeVar("_Answer", CreateMessageResult, CreateMessageResultWithTools, ElicitResult)


async def _relay(request: CreateMessageRequest | ElicitRequest, capability: str, answer: type[_Answer]) -> _Answer | ErrorData:
    """Sends the upstream's ``request`` to the client whose forwarded call it belongs to, on
    that call's stream, and returns the client's answer; an ``ErrorData`` naming the refusal
    when the request belongs to no call the proxy can see, or the client cannot take it."""
    method = request.method
    downstream = _relaying.get()
    if downstream is None:
        log.warning("mcp proxy: the upstream asked for %s outside any call it can be tied to; refused", method)
        return ErrorData(
            code=INVALID_REQUEST,
            message=(
                f"ACGS proxy: {method} is relayed to the client only within the call that asks for it "
                "(the 2026-07-28 protocol ties it to the call); this request names no call and is refused"
            ),
        )
    session = downstream.session
    if getattr(session.client_capabilities, capability, None) is None:
        why = f"does not offer {capability}"
        return ErrorData(code=INVALID_REQUEST, message=f"ACGS proxy: the client of this call {why}; {method} refused")
    if not session.can_send_request:
        why = "cannot take requests from the server on its connection"
        return ErrorData(code=INVALID_REQUEST, message=f"ACGS proxy: the client of this call {why}; {method} refused")
    log.info("mcp proxy: relaying the upstream's %s to the client of request %s", method, downstream.request_id)
    on_its_stream = ServerMessageMetadata(related_request_id=downstream.request_id)
    try:
        return await session.send_request(request, answer, metadata=on_its_stream)
    except MCPError as exc:
        return exc.error  # the client's own refusal, as it sent it
    except Exception as exc:  # the client's answer could not be had or read: the upstream is told, not left waiting
        log.warning("mcp proxy: relaying %s failed: %s", method, exc)
        return ErrorData(code=INTERNAL_ERROR, message=f"ACGS proxy: relaying {method} to the client failed: {type(exc).__name__}")


async def _relay_sampling(
    context: ClientRequestContext, params: CreateMessageRequestParams
) -> CreateMessageResult | CreateMessageResultWithTools | ErrorData:
    request = CreateMessageRequest(params=params)
    if params.tools or params.tool_choice is not None:
        return await _relay(request, "sampling", CreateMessageResultWithTools)
    return await _relay(request, "sampling", CreateMessageResult)


async def _relay_elicitation(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
    return await _relay(ElicitRequest(params=params), "elicitation", ElicitResult)


async def _relayed(ctx: ServerRequestContext[Any], forward: Callable[[], Awaitable[Any]]) -> Any:
    """``forward()`` with the upstream's requests during it relayed to ``ctx``'s client."""
    token = _relaying.set(ctx)
    try:
        return await forward()
    finally:
        _relaying.reset(token)


# -- sessions ----------------------------------------------------------------------------------


def _transport_session_id(ctx: ServerRequestContext[Any]) -> str | None:
    """The MCP client session a request belongs to: its ``Mcp-Session-Id`` over Streamable HTTP,
    None on stdio or in process (where the connection is the one client). An HTTP request
    without one (the 2026-07-28 protocol, or a stateless server) is refused: its calls could
    not be told from another client's, and a session rule that cannot see a session's history
    would let through what it forbids."""
    headers = getattr(ctx.request, "headers", None)
    if headers is None:
        return None
    session_id = headers.get(MCP_SESSION_ID_HEADER)
    if not session_id:
        raise MCPError(
            INVALID_REQUEST,
            "ACGS: this proxy keeps one session per MCP client and the request names none (no Mcp-Session-Id): "
            "connect with the initialize handshake (protocol 2025-11-25 or earlier)",
        )
    return str(session_id)


def _at_session_end(ctx: ServerRequestContext[Any], session_id: str, end: Callable[[], Awaitable[None]]) -> None:
    """Runs ``end`` when the HTTP session ``session_id`` ends (the client's DELETE, the SDK's
    idle timeout, a crash): the SDK unwinds the session's ``Connection.exit_stack`` then. SDK
    2.3 gives low-level handlers no public path to the connection (``ctx.session`` holds it),
    so it is read here and only here; where it cannot be had, the session's guard stays until
    the proxy stops (memory, not safety: a new session always has a new id)."""
    connection = getattr(ctx.session, "_connection", None)
    stack = getattr(connection, "exit_stack", None)
    # Only a connection that is this session's: a per-request one would end it after one call.
    if stack is None or getattr(connection, "session_id", None) != session_id:
        log.debug("mcp proxy: the end of session %s cannot be seen; its guard stays until the proxy stops", session_id)
        return
    stack.push_async_callback(end)


def _claimed_client(ctx: ServerRequestContext[Any]) -> str | None:
    """The name the client gave itself (``clientInfo``): a claim, logged, never trusted."""
    params = ctx.session.client_params
    info = getattr(params, "client_info", None)
    name = getattr(info, "name", None)
    return name[:200] if isinstance(name, str) else None


# -- one governed call ---------------------------------------------------------------------------


async def _governed(session: _Session, tool: str, arguments: dict[str, Any], forward: Callable[[], Awaitable[Any]]) -> Any:
    """Decides ``tool`` with ``arguments`` through the session's guard and, when it may go,
    returns ``forward()``'s result (as JSON: the guard's audit event digests it). Raises
    ``_Refused`` when the call was not made, ``MCPError`` for the upstream's errors."""
    forwarded = False

    async def run() -> Any:
        nonlocal forwarded
        forwarded = True
        return await forward()

    key = _call_key(tool, arguments)
    request_id = session.pending.pop(key, None) if key is not None else None
    try:
        if request_id is not None:
            return await session.guard.aresume(request_id, tool, arguments, run)
        return await session.guard.acall(tool, arguments, run)
    except (ToolDenied, ApprovalRequired) as exc:
        still = getattr(exc, "request_id", None)
        if still is not None and key is not None:
            session.pending[key] = still
            while len(session.pending) > PENDING_MAX:
                del session.pending[next(iter(session.pending))]
        raise _refusal(exc) from None
    except ToolInputError as exc:
        summary = {"outcome": "deny", "tool": tool, "decision_id": exc.decision_id, "reasons": [exc.message]}
        raise _Refused(f"ACGS: tool {tool!r} refused (decision {exc.decision_id}): {exc.message}", summary) from None
    except MCPError as exc:
        if exc.code == CONNECTION_CLOSED:
            # Not the client's connection: say whose, so it is not mistaken for the proxy's.
            raise MCPError(INTERNAL_ERROR, "the upstream MCP server closed the connection") from None
        raise  # the upstream's protocol error (unknown tool, bad params) as it sent it
    except Exception as exc:
        if not forwarded:
            # The approver failed: the guard audited the call as rejected; it was not made.
            log.warning("mcp proxy: the approver failed on %r: %s", tool, exc)
            text = f"ACGS: tool {tool!r} was not approved: the approver failed: {type(exc).__name__}: {exc}"
            raise _Refused(text, None) from None
        log.warning("mcp proxy: the upstream failed on %r: %s", tool, exc)
        raise MCPError(INTERNAL_ERROR, f"the upstream MCP server failed: {type(exc).__name__}: {exc}") from None


def _as_json(result: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


# -- the server ------------------------------------------------------------------------------


def make_proxy(
    upstream: Upstream,
    guard: Guard | GuardFactory,
    *,
    hide_denied: bool = True,
    api_key: str | None = None,
    name: str = "acgs-mcp-proxy",
) -> Server[Any]:
    """An MCP server (low-level ``mcp.server.Server``) fronting ``upstream`` (a
    ``StdioServerParameters`` to launch, the URL of a Streamable HTTP server, or an MCP server
    object in this process) with a guard deciding every ``tools/call``, ``resources/read`` and
    ``prompts/get``. The upstream is connected when the server starts serving (per connection
    over stdio, once for Streamable HTTP) and closed when it stops.

    ``guard``: a ``GuardFactory``, called once per MCP client session for that session's guard
    (closed by the proxy when the session ends), or one ``Guard`` that every client shares
    (its history too: fit for one client). ``api_key``: the credential to read the
    constitution's tool data from a policy service (``hide_denied`` with remote guards)."""
    if not isinstance(upstream, StdioServerParameters | str | Server | MCPServer):
        raise TypeError(f"upstream must be StdioServerParameters, a URL or an MCP server, not {type(upstream).__name__}")
    if not isinstance(guard, Guard) and not callable(guard):
        raise TypeError(f"guard must be an acgs.Guard or a function making one, not {type(guard).__name__}")
    #: The constitution's tool data, read on the first listing (a list: set once, from a handler).
    tool_data: list[Mapping[str, Any] | None] = []

    async def close_session(session: _Session) -> None:
        if session.owned:
            await session.guard.aclose()

    def open_session(ctx: ServerRequestContext[_Connection], session_id: str | None) -> _Session:
        if isinstance(guard, Guard):
            session = _Session(guard, owned=False)
        else:
            try:
                made = guard(session_id)
            except Exception as exc:
                log.warning("mcp proxy: no guard for session %s: %s", session_id, exc)
                message = f"ACGS: the session's guard could not be made: {type(exc).__name__}: {exc}"
                raise MCPError(INTERNAL_ERROR, message) from None
            if not isinstance(made, Guard):
                raise MCPError(INTERNAL_ERROR, f"ACGS: the guard factory returned {type(made).__name__}, not an acgs.Guard")
            session = _Session(made, owned=True)
        sessions = ctx.lifespan_context.sessions
        sessions[session_id] = session
        if session_id is not None:

            async def end() -> None:
                if sessions.get(session_id) is session:
                    del sessions[session_id]
                await close_session(session)

            _at_session_end(ctx, session_id, end)
        log.info(
            "mcp proxy: session %s (guard session %s, agent %s); the client calls itself %r",
            session_id or "stdio", session.guard.session_id, session.guard.agent_id, _claimed_client(ctx),
        )  # fmt: skip
        return session

    def session_of(ctx: ServerRequestContext[_Connection]) -> _Session:
        session_id = _transport_session_id(ctx)
        # No await between the look-up and the insert: one session per id, however many
        # requests of a new session arrive at once.
        session = ctx.lifespan_context.sessions.get(session_id)
        return session if session is not None else open_session(ctx, session_id)

    async def hidden(session: _Session) -> Callable[[str], bool]:
        """What ``hide_denied`` leaves out of a listing: the names the constitution never
        allows (nothing when hiding is off or the tool data cannot be read)."""
        if not hide_denied:
            return lambda _: False
        if not tool_data:
            tool_data.append(await _tool_data(session.guard, api_key))
        data = tool_data[0]
        if data is None:
            return lambda _: False
        return lambda tool: never_allowed(data, tool)

    @asynccontextmanager
    async def lifespan(_: Server[Any]) -> AsyncIterator[_Connection]:
        # No response cache: lists are asked of the upstream each time.
        # The upstream's sampling and elicitation requests are relayed to the calling client.
        to_upstream = Client(upstream, cache=None, sampling_callback=_relay_sampling, elicitation_callback=_relay_elicitation)
        async with to_upstream as client:
            connection = _Connection(client)
            try:
                yield connection
            finally:
                sessions = list(connection.sessions.values())
                connection.sessions.clear()
                # Shielded: a stopping server still delivers its sessions' audit events.
                with anyio.CancelScope(shield=True):
                    for session in sessions:
                        await close_session(session)

    def offers(ctx: ServerRequestContext[_Connection], what: str) -> bool:
        capabilities = ctx.lifespan_context.upstream.server_capabilities
        return getattr(capabilities, what, None) is not None

    # -- tools -----------------------------------------------------------------------------

    async def list_tools(ctx: ServerRequestContext[_Connection], params: PaginatedRequestParams | None) -> ListToolsResult:
        session = session_of(ctx)
        cursor = params.cursor if params is not None else None
        listing = await ctx.lifespan_context.upstream.list_tools(cursor=cursor)
        never = await hidden(session)
        shown = [t for t in listing.tools if not never(t.name)]
        return listing if len(shown) == len(listing.tools) else listing.model_copy(update={"tools": shown})

    async def call_tool(ctx: ServerRequestContext[_Connection], params: CallToolRequestParams) -> CallToolResult:
        session = session_of(ctx)
        tool = params.name
        arguments: dict[str, Any] = dict(params.arguments) if params.arguments else {}
        upstream_client = ctx.lifespan_context.upstream

        async def forward() -> dict[str, Any]:
            return _as_json(await _relayed(ctx, lambda: upstream_client.call_tool(tool, arguments)))

        try:
            dumped = await _governed(session, tool, arguments, forward)
        except _Refused as refused:
            return _text_error(refused.text, refused.summary)
        return CallToolResult.model_validate(dumped)

    # -- resources and prompts: passed through, each read decided as a call ---------------------

    async def list_resources(
        ctx: ServerRequestContext[_Connection], params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        session = session_of(ctx)
        if not offers(ctx, "resources") or (await hidden(session))(RESOURCE_READ):
            return ListResourcesResult(resources=[])
        return await ctx.lifespan_context.upstream.list_resources(cursor=params.cursor if params is not None else None)

    async def list_resource_templates(
        ctx: ServerRequestContext[_Connection], params: PaginatedRequestParams | None
    ) -> ListResourceTemplatesResult:
        session = session_of(ctx)
        if not offers(ctx, "resources") or (await hidden(session))(RESOURCE_READ):
            return ListResourceTemplatesResult(resource_templates=[])
        upstream_client = ctx.lifespan_context.upstream
        return await upstream_client.list_resource_templates(cursor=params.cursor if params is not None else None)

    async def read_resource(ctx: ServerRequestContext[_Connection], params: ReadResourceRequestParams) -> ReadResourceResult:
        session = session_of(ctx)
        if not offers(ctx, "resources"):
            raise MCPError(METHOD_NOT_FOUND, "the upstream MCP server offers no resources")
        uri = str(params.uri)
        upstream_client = ctx.lifespan_context.upstream

        async def forward() -> dict[str, Any]:
            return _as_json(await _relayed(ctx, lambda: upstream_client.read_resource(uri)))

        try:
            dumped = await _governed(session, RESOURCE_READ, {"uri": uri}, forward)
        except _Refused as refused:
            raise MCPError(INVALID_REQUEST, refused.text, {"acgs": refused.summary} if refused.summary else None) from None
        return ReadResourceResult.model_validate(dumped)

    async def list_prompts(ctx: ServerRequestContext[_Connection], params: PaginatedRequestParams | None) -> ListPromptsResult:
        session = session_of(ctx)
        if not offers(ctx, "prompts") or (await hidden(session))(PROMPT_GET):
            return ListPromptsResult(prompts=[])
        return await ctx.lifespan_context.upstream.list_prompts(cursor=params.cursor if params is not None else None)

    async def get_prompt(ctx: ServerRequestContext[_Connection], params: GetPromptRequestParams) -> GetPromptResult:
        session = session_of(ctx)
        if not offers(ctx, "prompts"):
            raise MCPError(METHOD_NOT_FOUND, "the upstream MCP server offers no prompts")
        prompt = params.name
        prompt_arguments = dict(params.arguments) if params.arguments else {}
        upstream_client = ctx.lifespan_context.upstream

        async def forward() -> dict[str, Any]:
            return _as_json(await _relayed(ctx, lambda: upstream_client.get_prompt(prompt, prompt_arguments or None)))

        try:
            dumped = await _governed(session, PROMPT_GET, {"name": prompt, "arguments": prompt_arguments}, forward)
        except _Refused as refused:
            raise MCPError(INVALID_REQUEST, refused.text, {"acgs": refused.summary} if refused.summary else None) from None
        return GetPromptResult.model_validate(dumped)

    return Server(
        name,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
