"""``acgs mcp proxy``: the command that runs the guarded MCP proxy (``acgs.mcp.proxy``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """``acgs mcp proxy``'s options, checked once: what the proxy fronts, where it serves, and
    how each client session's guard decides, asks reviewers and audits."""

    #: ``StdioServerParameters`` to launch, or a Streamable HTTP URL.
    upstream: Any
    #: (host, port) to serve Streamable HTTP on; None: stdio.
    address: tuple[str, int] | None
    #: The agent every session's decisions and audit events name: the operator's fact, never
    #: the MCP client's claim (its ``clientInfo`` is only logged).
    agent_id: str
    #: The stdio session's id; over HTTP, the prefix of each client session's id.
    session_id: str | None
    policy_url: str | None
    api_key: str | None
    bundle: Path | None
    audit: str | None
    audit_api_key: str | None
    review_url: str | None
    review_wait: float
    hide_denied: bool

    @classmethod
    def from_command(
        cls,
        *,
        upstream_command: str | None,
        upstream_url: str | None,
        listen: str | None,
        insecure: bool,
        show_denied: bool,
        **rest: Any,
    ) -> ProxyOptions:
        """The options from the command's parameters; ``click.UsageError`` for an unclear or
        exposed setup."""
        try:
            from mcp import StdioServerParameters
        except ImportError:
            raise click.UsageError("the MCP SDK is not installed: pip install 'acgs[mcp]'") from None
        from acgs.mcp.serve import is_loopback, parse_listen

        if (upstream_command is None) == (upstream_url is None):
            raise click.UsageError("give exactly one of --upstream-command and --upstream-url")
        if rest["policy_url"] is not None and rest["bundle"] is not None:
            raise click.UsageError("give --policy-url or --bundle, not both")
        upstream: Any
        if upstream_command is not None:
            argv = shlex.split(upstream_command)
            if not argv:
                raise click.UsageError("--upstream-command is empty")
            upstream = StdioServerParameters(command=argv[0], args=argv[1:])
        else:
            assert upstream_url is not None
            if not upstream_url.startswith(("http://", "https://")):
                raise click.UsageError("--upstream-url must be an http:// or https:// URL")
            upstream = upstream_url
        address = None
        if listen is not None:
            try:
                address = parse_listen(listen)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
            if not is_loopback(address[0]) and not insecure:
                raise click.UsageError(f"--listen {listen}: not a loopback address; the proxy asks no credentials (add --insecure)")
        return cls(upstream=upstream, address=address, hide_denied=not show_denied, **rest)

    def session_id_for(self, mcp_session_id: str | None) -> str | None:
        """The guard session id of one MCP client session: ``--session-id`` on stdio (None: a
        new id); over HTTP, ``<--session-id or "mcp">-<Mcp-Session-Id>``."""
        if mcp_session_id is None:
            return self.session_id
        return f"{self.session_id or 'mcp'}-{mcp_session_id}"


@click.group()
def mcp() -> None:
    """ACGS in front of MCP servers."""


@mcp.command()
@click.option("--upstream-command", metavar="COMMAND", help='The upstream MCP server to launch over stdio, e.g. "python server.py".')
@click.option("--upstream-url", metavar="URL", help="The upstream MCP server's Streamable HTTP URL.")
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve Streamable HTTP at http://HOST:PORT/mcp (a bare PORT listens on 127.0.0.1); default: stdio.",
)
@click.option("--insecure", is_flag=True, help="Allow --listen beyond loopback: the proxy itself asks no credentials.")
@click.option(
    "--agent-id",
    default="mcp-agent",
    show_default=True,
    help="The agent named in every decision and audit event, for every client (an MCP client's own name never picks it).",
)
@click.option(
    "--session-id",
    help="The stdio session's id, whose history the constitution's session rules read (default: a new id); "
    "over --listen, the prefix of each client session's id.",
)
@click.option("--policy-url", metavar="URL", help="Decide on a remote ACGS policy service (default: the embedded engine).")
@click.option("--api-key", envvar="ACGS_API_KEY", help="The agent's credential for --policy-url and --review-url (default: $ACGS_API_KEY).")
@click.option("--bundle", type=click.Path(dir_okay=False, path_type=Path), help="Constitution bundle for the embedded engine.")
@click.option(
    "--audit",
    metavar="URL|PATH",
    help="Audit each call: an audit service URL, or a SQLite audit log file (signed with the key under ACGS_DATA_DIR).",
)
@click.option("--audit-api-key", envvar="ACGS_AUDIT_API_KEY", help="Credential for an audit service URL.")
@click.option(
    "--review-url",
    metavar="URL",
    help="Hold calls that need approval as action requests in the evolution service at URL and wait for "
    "reviewers (default: such calls are refused with the decision id).",
)
@click.option(
    "--review-wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a call waits for reviewers; then it is refused as pending, and the same call made again "
    "runs once approved.",
)
@click.option("--show-denied", is_flag=True, help="List every upstream tool, also those the constitution never allows.")
@click.pass_context
def proxy(ctx: click.Context, /, **params: Any) -> None:
    """An MCP server in front of one upstream MCP server: every tools/call (and resources/read,
    prompts/get) is decided by the constitution (acgs/tools/decision) before it reaches the
    upstream; a denied call is a tool error carrying the reasons; tools the constitution never
    allows are left out of tools/list. Each MCP client session has its own session history."""
    options = ProxyOptions.from_command(**params)

    import anyio

    try:
        anyio.run(_serve, ctx, options)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a proxy on --listen stops; the guards have delivered their audit events


async def _serve(ctx: click.Context, options: ProxyOptions) -> None:
    import httpx

    from acgs import Engine, default_bundle_path
    from acgs.guard import Guard
    from acgs.guard.audit import GuardAudit, sink_for
    from acgs.mcp.proxy import make_proxy
    from acgs.mcp.serve import http_server, serve_stdio

    # What every session's guard shares: one engine (or one policy service client), one
    # approver, one audit trail.
    engine = None
    http = None
    if options.policy_url is None:
        engine = Engine.load(options.bundle if options.bundle is not None else default_bundle_path())
    else:
        http = httpx.AsyncClient(timeout=10.0)
    audit_log = None
    audit_target: Any = options.audit
    if options.audit is not None and not options.audit.startswith(("http://", "https://")):
        from acgs.audit import keys
        from acgs.audit.log import AuditLog
        from acgs.audit.store import open_store
        from acgs.cli import configuration

        data_dir = configuration(ctx).audit.data_dir
        audit_log = AuditLog(open_store(f"sqlite:///{Path(options.audit).resolve()}"), keys.load_or_create(data_dir))
        await audit_log.open()
        audit_target = audit_log
    trail = GuardAudit(sink_for(audit_target, api_key=options.audit_api_key)) if audit_target is not None else None
    approver = None
    if options.review_url is not None:
        from acgs.guard import ReviewApprover

        approver = ReviewApprover(options.review_url, options.api_key, timeout=options.review_wait)

    def session_guard(mcp_session_id: str | None) -> Guard:
        return Guard(
            engine,
            url=options.policy_url,
            api_key=options.api_key,
            agent_id=options.agent_id,
            session_id=options.session_id_for(mcp_session_id),
            audit=trail,
            approver=approver,
            async_http_client=http,
        )

    try:
        server = make_proxy(options.upstream, session_guard, hide_denied=options.hide_denied, api_key=options.api_key)
        if options.address is None:
            await serve_stdio(server)
        else:
            host, port = options.address
            click.echo(f"acgs mcp proxy: serving http://{host}:{port}/mcp", err=True)
            await http_server(server, host, port).serve()
    finally:
        if trail is not None:
            await trail.aflush(5.0)
            trail.close()
        if http is not None:
            await http.aclose()
        if audit_log is not None:
            await audit_log.close()
