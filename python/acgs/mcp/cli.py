"""``acgs mcp proxy``: the command that runs the guarded MCP proxy (``acgs.mcp.proxy``)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click


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
@click.option("--agent-id", default="mcp-agent", show_default=True, help="The agent named in every decision and audit event.")
@click.option("--session-id", help="The session whose history the constitution's session rules read (default: a new id).")
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
def proxy(
    ctx: click.Context,
    upstream_command: str | None,
    upstream_url: str | None,
    listen: str | None,
    insecure: bool,
    agent_id: str,
    session_id: str | None,
    policy_url: str | None,
    api_key: str | None,
    bundle: Path | None,
    audit: str | None,
    audit_api_key: str | None,
    review_url: str | None,
    review_wait: float,
    show_denied: bool,
) -> None:
    """An MCP server in front of one upstream MCP server: every tools/call is decided by the
    constitution (acgs/tools/decision) before it reaches the upstream; a denied call is a tool
    error carrying the reasons; tools the constitution never allows are left out of tools/list."""
    try:
        from mcp import StdioServerParameters
    except ImportError:
        raise click.UsageError("the MCP SDK is not installed: pip install 'acgs[mcp]'") from None
    from acgs.mcp.serve import is_loopback, parse_listen

    if (upstream_command is None) == (upstream_url is None):
        raise click.UsageError("give exactly one of --upstream-command and --upstream-url")
    if policy_url is not None and bundle is not None:
        raise click.UsageError("give --policy-url or --bundle, not both")
    upstream: Any
    if upstream_command is not None:
        argv = shlex.split(upstream_command)
        if not argv:
            raise click.UsageError("--upstream-command is empty")
        upstream = StdioServerParameters(command=argv[0], args=argv[1:])
    else:
        if not upstream_url.startswith(("http://", "https://")):  # type: ignore[union-attr]
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

    import anyio

    try:
        anyio.run(
            _serve, ctx, upstream, address, agent_id, session_id, policy_url, api_key, bundle, audit, audit_api_key,
            review_url, review_wait, not show_denied,
        )  # fmt: skip
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a proxy on --listen stops; the guard has delivered its audit events


async def _serve(
    ctx: click.Context,
    upstream: Any,
    address: tuple[str, int] | None,
    agent_id: str,
    session_id: str | None,
    policy_url: str | None,
    api_key: str | None,
    bundle: Path | None,
    audit: str | None,
    audit_api_key: str | None,
    review_url: str | None,
    review_wait: float,
    hide_denied: bool,
) -> None:
    from acgs import Engine
    from acgs.guard import Guard
    from acgs.mcp.proxy import make_proxy
    from acgs.mcp.serve import http_server, serve_stdio

    audit_log = None
    audit_target: Any = audit
    if audit is not None and not audit.startswith(("http://", "https://")):
        from acgs.audit import keys
        from acgs.audit.log import AuditLog
        from acgs.audit.store import open_store
        from acgs.cli import configuration

        data_dir = configuration(ctx).audit.data_dir
        audit_log = AuditLog(open_store(f"sqlite:///{Path(audit).resolve()}"), keys.load_or_create(data_dir))
        await audit_log.open()
        audit_target = audit_log
    engine = Engine.load(bundle) if bundle is not None else None
    approver = None
    if review_url is not None:
        from acgs.guard import ReviewApprover

        approver = ReviewApprover(review_url, api_key, timeout=review_wait)
    guard = Guard(
        engine,
        url=policy_url,
        api_key=api_key,
        agent_id=agent_id,
        session_id=session_id,
        audit=audit_target,
        audit_api_key=audit_api_key,
        approver=approver,
    )
    try:
        server = make_proxy(upstream, guard, hide_denied=hide_denied)
        if address is None:
            await serve_stdio(server)
        else:
            http = http_server(server, *address)
            click.echo(f"acgs mcp proxy: serving http://{address[0]}:{address[1]}/mcp", err=True)
            await http.serve()
    finally:
        await guard.aclose()
        if audit_log is not None:
            await audit_log.close()
