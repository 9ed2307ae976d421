"""The ``acgs`` command line: run the services, evaluate and build policy bundles, verify the audit
log, submit and review evolution requests, run code in the sandbox, manage keys, benchmark.

Every command reads the one configuration (``--config FILE`` or ``$ACGS_CONFIG``, then ``ACGS_*``
variables, then its own flags); ``acgs config show`` prints what it comes to."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from acgs import SEED_REQUEST, Engine, __version__, default_bundle_path
from acgs.bundle_plan import PlanMissing, add_plan
from acgs.config import CONFIG_ENV, AcgsConfig, ConfigError, load_config, template
from acgs.errors import AcgsError

EXAMPLE_INPUT = SEED_REQUEST
SERVICES = ("sandbox", "evolution", "audit", "policy")
F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns ACGS's own errors into one line on stderr and exit status 1 (2 for configuration)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"acgs: {exc}", err=True)
            ctx.exit(2)
        except AcgsError as exc:
            click.echo(f"acgs: {exc.code}: {exc}", err=True)
            ctx.exit(1)


def configuration(ctx: click.Context, **overrides: Mapping[str, Any]) -> AcgsConfig:
    """The configuration for this invocation: the file and environment, then ``overrides``
    (``section -> field -> value``; None values are ignored)."""
    root = ctx.find_root()
    path = root.params.get("config_file")
    return load_config(path, overrides={k: dict(v) for k, v in overrides.items()})


def _read_input(text: str | None) -> object:
    if text is None:
        return EXAMPLE_INPUT
    if text == "-":
        return json.load(sys.stdin)
    if text.startswith("@"):
        return json.loads(Path(text[1:]).read_text())
    return json.loads(text)


def _input_or_exit(text: str | None) -> object:
    try:
        return _read_input(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise click.UsageError(f"cannot read input: {exc}") from None


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="acgs")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"TOML configuration file (default: ${CONFIG_ENV}; see `acgs config template`).",
)
def cli(config_file: Path | None) -> None:
    """ACGS: constitutional governance for AI agents.

    Decisions from a constitution compiled to WebAssembly, oversight of agent changes, a
    verifiable audit log and sandboxed execution, as four services or one library."""


# -- serve ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--service",
    type=click.Choice(["all", *SERVICES]),
    default="all",
    show_default=True,
    help="Which service: all four in this process, or one (policy :8004, evolution :8002, audit :8003, sandbox :8001).",
)
@click.option("--host", help="Listen address (one service only; default from the configuration).")
@click.option("--port", type=int, help="Listen port (one service only).")
@click.option("--workers", type=int, help="uvicorn worker processes (policy service only).")
@click.option("--bundle", type=click.Path(path_type=Path), help="Constitution bundle (default: the one shipped with ACGS).")
@click.option(
    "--insecure",
    is_flag=True,
    default=None,
    help="With authentication off, listen beyond loopback anyway: anyone who can reach the port is "
    "trusted with every claim it makes ([security] insecure, ACGS_INSECURE).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    service: str,
    host: str | None,
    port: int | None,
    workers: int | None,
    bundle: Path | None,
    insecure: bool | None,
) -> None:
    """Run the ACGS services (all four by default) until stopped.

    With authentication off they listen on loopback only: another address stops the start
    unless --insecure says to go on."""
    from acgs import server

    # Only a flag given overrides the configuration: its absence does not turn insecure off.
    security = {"security": {"insecure": True if insecure else None}}
    if service == "all":
        if host is not None or port is not None:
            raise click.UsageError("--host and --port name one service's address; use --service or the configuration")
        if workers is not None:
            raise click.UsageError("--workers is for `--service policy` (all four share one process)")
        overrides = {name: {"bundle": bundle} for name in ("policy", "evolution", "sandbox")}
        config = configuration(ctx, **overrides, **security)
        server.serve_all(config)
        return
    if workers is not None and service != "policy":
        raise click.UsageError(f"the {service} service runs one worker; --workers is for the policy service")
    fields: dict[str, Any] = {"host": host, "port": port}
    if service == "policy":
        fields["workers"] = workers
    if service != "audit":
        fields["bundle"] = bundle
    config = configuration(ctx, **{service: fields}, **security)
    server.serve_one(service, config)


# -- policies -------------------------------------------------------------------------------


@cli.command("eval")
@click.option("--bundle", type=click.Path(path_type=Path), help="Bundle path (default: the constitution shipped with ACGS).")
@click.option("-e", "--entrypoint", help="Entrypoint, e.g. acgs/main/decision (default: the bundle's first).")
@click.option("-i", "--input", "input_text", help="Input JSON, @file, or - for stdin (default: the seed request).")
def eval_(bundle: Path | None, entrypoint: str | None, input_text: str | None) -> None:
    """Evaluate an input against a policy bundle and print OPA's result set."""
    engine = Engine.load(bundle or default_bundle_path())
    value = _input_or_exit(input_text)
    raw = engine.evaluate_json(json.dumps(value).encode(), entrypoint)
    _print_json({"entrypoint": entrypoint or engine.entrypoints[0], "bundle_digest": engine.bundle_digest, "result_set": json.loads(raw)})


@cli.command()
@click.option("--bundle", type=click.Path(path_type=Path), help="Bundle path (default: the constitution shipped with ACGS).")
@click.option("-i", "--input", "input_text", help="Request JSON, @file, or - for stdin (default: the seed request).")
def decide(bundle: Path | None, input_text: str | None) -> None:
    """Decide a constitution request (cache, fast path, fail-closed) and print the decision."""
    engine = Engine.load(bundle or default_bundle_path())
    _print_json(engine.decide(_input_or_exit(input_text)))


def _inspect(bundle: Path | None) -> None:
    engine = Engine.load(bundle or default_bundle_path())
    _print_json(
        {
            "bundle_digest": engine.bundle_digest,
            "revision": engine.revision,
            "abi_version": engine.abi_version,
            "entrypoints": engine.entrypoints,
            "builtins": engine.builtins,
            "constitutional_hash": engine.constitutional_hash,
            "cacheable": engine.cacheable,
            "fast_path": engine.fast_path,
            "native": engine.native,
        }
    )


@cli.group()
def bundle() -> None:
    """Build and inspect OPA Wasm bundles."""


@bundle.command("inspect")
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
def bundle_inspect(path: Path | None) -> None:
    """Show a bundle's digest, entrypoints, builtins and what the engine derived from it."""
    _inspect(path)


@cli.command("inspect", hidden=True)
@click.option("--bundle", type=click.Path(path_type=Path))
def inspect_(bundle: Path | None) -> None:
    """The same as `acgs bundle inspect`."""
    _inspect(bundle)


def find_opa(explicit: str | None = None) -> str:
    """The OPA CLI: ``explicit``, ``$OPA``, ``opa`` on PATH, or the one ``make opa`` installs."""
    for candidate in (explicit, os.environ.get("OPA"), shutil.which("opa"), str(Path.home() / ".local/bin/opa")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise click.UsageError("OPA CLI not found: install it (`make opa`) or pass --opa / set $OPA")


def _add_plan(bundle: Path, plan_bundle: Path) -> None:
    try:
        add_plan(bundle, plan_bundle)
    except PlanMissing as exc:
        raise click.ClickException(f"opa build -t plan wrote no /plan.json ({exc})") from None


def _run_step(argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"{' '.join(argv[:2])} failed:\n{(done.stderr or done.stdout).strip()}")


@bundle.command("build")
@click.argument("sources", nargs=-1, required=True)
@click.option("-e", "--entrypoint", "entrypoints", multiple=True, required=True, help="Entrypoint to compile (repeat).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("bundle.tar.gz"), show_default=True)
@click.option("--ignore", multiple=True, default=("*_test.rego",), show_default=True, help="File patterns left out of the bundle.")
@click.option("--test/--no-test", "run_tests", default=True, show_default=True, help="Run `opa test` on the sources first.")
@click.option("--opa", "opa_path", help="OPA CLI to use (default: $OPA, then PATH, then ~/.local/bin/opa).")
def bundle_build(
    sources: tuple[str, ...], entrypoints: tuple[str, ...], output: Path, ignore: tuple[str, ...], run_tests: bool, opa_path: str | None
) -> None:
    """Compile Rego SOURCES (files or directories; `prefix:dir` mounts a directory under
    data.prefix) to a Wasm bundle carrying OPA's plan (/plan.json) too, then load it in the
    ACGS engine to check it.

        acgs bundle build -e acgs/main/decision acgs:policies/acgs -o constitution.tar.gz"""
    opa = find_opa(opa_path)
    steps: list[tuple[str, Callable[[], None]]] = []
    if run_tests:
        test_paths = [s.split(":", 1)[1] if ":" in s and not Path(s).exists() else s for s in sources]
        steps.append(("opa test", lambda: _run_step([opa, "test", *test_paths])))
    tmp = output.with_name(output.name + ".tmp")
    plan_tmp = output.with_name(output.name + ".plan.tmp")
    args = [*(f"--ignore={p}" for p in ignore), *(arg for e in entrypoints for arg in ("-e", e))]
    steps.append(("opa build", lambda: _run_step([opa, "build", "-t", "wasm", *args, *sources, "-o", str(tmp)])))
    # The same entrypoints as OPA's plan, carried beside policy.wasm for the native evaluator.
    steps.append(("opa build -t plan", lambda: _run_step([opa, "build", "-t", "plan", *args, *sources, "-o", str(plan_tmp)])))
    steps.append(("add the plan", lambda: _add_plan(tmp, plan_tmp)))
    loaded: dict[str, Engine] = {}

    def check() -> None:
        loaded["engine"] = Engine.load(tmp)

    steps.append(("load and check", check))
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with click.progressbar(steps, label="building", item_show_func=lambda s: s[0] if s else None, file=sys.stderr) as bar:
            for _, step in bar:
                step()
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
        plan_tmp.unlink(missing_ok=True)
    engine = loaded["engine"]
    _print_json(
        {
            "bundle": str(output),
            "bundle_digest": engine.bundle_digest,
            "entrypoints": engine.entrypoints,
            "constitutional_hash": engine.constitutional_hash,
            "fast_path": engine.fast_path,
            "native": engine.native,
        }
    )


# -- configuration --------------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show and check the configuration."""


@config_group.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective settings of every service (credentials masked)."""
    config = configuration(ctx)
    _print_json({"source": str(config.source) if config.source else None, **config.public()})


@config_group.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate the configuration file and ACGS_* variables; exit 2 naming the bad key."""
    config = configuration(ctx)
    where = str(config.source) if config.source else "defaults and environment"
    click.echo(f"configuration ok ({where})")


@config_group.command("template")
def config_template() -> None:
    """Print a commented TOML file with every key, its default and its variable."""
    click.echo(template(), nl=False)


# -- audit ----------------------------------------------------------------------------------


def _store_options(f: F) -> F:
    f = click.option("--database-url", help="sqlite:///path or postgresql://... (default: from the configuration).")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="ACGS data directory.")(f)
    return f


def _namespace(ctx: click.Context, **values: Any) -> argparse.Namespace:
    return argparse.Namespace(config=ctx.find_root().params.get("config_file"), **values)


@cli.group()
def audit() -> None:
    """Verify, checkpoint, export and archive the audit log."""


@audit.command("verify")
@_store_options
@click.option("--from", "from_index", type=int, default=0, show_default=True)
@click.option("--to", "to_index", type=int, help="End, exclusive (default: the whole log).")
@click.option("--progress", is_flag=True, help="Show the progress line even when stderr is not a terminal.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path),
              help="File with the log's verifier key (or its signing key); default ACGS_AUDIT_SIGNING_KEY or <data_dir>/audit-signing.key.")
@click.option("--key-id", help="The log's published key id (8 hex): refuse any other key.")
@click.option("--witness", type=click.Path(dir_okay=False, path_type=Path),
              help="Witnessed checkpoint (default <data_dir>/audit-checkpoint.note).")
@click.pass_context
def audit_verify(ctx: click.Context, /, **kw: Any) -> None:
    """Re-hash every stored event and check the chain and the latest checkpoint."""
    from acgs.audit import cli as audit_cli

    ctx.exit(asyncio.run(audit_cli._verify(_namespace(ctx, **kw))))


@audit.command("checkpoint")
@_store_options
@click.option("--no-sign", is_flag=True, help="Print the latest checkpoint without signing a new one.")
@click.option("--json", "json_", is_flag=True, help="Print JSON.")
@click.pass_context
def audit_checkpoint(ctx: click.Context, /, json_: bool, **kw: Any) -> None:
    """Sign a checkpoint of the whole log (if it grew) and print it."""
    from acgs.audit import cli as audit_cli

    ctx.exit(asyncio.run(audit_cli._checkpoint(_namespace(ctx, json=json_, **kw))))


@audit.command("export")
@_store_options
@click.option("--from", "from_index", type=int, default=0, show_default=True)
@click.option("--to", "to_index", type=int, help="End, exclusive (default: the whole log).")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_context
def audit_export(ctx: click.Context, /, **kw: Any) -> None:
    """Write events [from, to) to FILE (- for stdout) as an offline-verifiable segment."""
    from acgs.audit import cli as audit_cli

    ctx.exit(asyncio.run(audit_cli._export(_namespace(ctx, **kw))))


@audit.command("archive")
@_store_options
@click.option("--segment-size", type=int, help="Events per segment (default: from the configuration).")
@click.option("--to", help="A directory or s3://bucket/prefix (default: the configured archive).")
@click.option("--endpoint", help="S3-compatible endpoint URL.")
@click.pass_context
def audit_archive(ctx: click.Context, /, **kw: Any) -> None:
    """Seal complete segments and write them to the archive."""
    from acgs.audit import cli as audit_cli

    ctx.exit(asyncio.run(audit_cli._archive(_namespace(ctx, **kw))))


@audit.command("verify-export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--key", help="The log's verifier key, or @file holding it (required: an export's own key proves nothing).")
@click.pass_context
def audit_verify_export(ctx: click.Context, /, **kw: Any) -> None:
    """Verify an exported or archived segment offline (no database needed)."""
    from acgs.audit import cli as audit_cli

    ctx.exit(audit_cli._verify_export(_namespace(ctx, **kw)))


# -- evolution ------------------------------------------------------------------------------


def _service_url(ctx: click.Context, service: str, explicit: str | None) -> str:
    if explicit:
        return explicit.rstrip("/")
    settings = getattr(configuration(ctx), service)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def _client_options(f: F) -> F:
    f = click.option("--api-key", envvar="ACGS_API_KEY", help="API key or JWT sent as a bearer token (default: $ACGS_API_KEY).")(f)
    f = click.option("--url", help="The service's base URL (default: from the configuration).")(f)
    return f


def _auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@cli.group()
def evolution() -> None:
    """Submit, list and review agent change requests (talks to the evolution service)."""


def _evolution_call(ctx: click.Context, url: str | None, api_key: str | None, identity: str | None, call: Callable[[Any], Any]) -> Any:
    from acgs.services.evolution.client import EvolutionClient, EvolutionRequestError

    async def run() -> Any:
        async with EvolutionClient(_service_url(ctx, "evolution", url), identity=identity) as client:
            client._http.headers.update(_auth_headers(api_key))
            return await call(client)

    try:
        return asyncio.run(run())
    except EvolutionRequestError as exc:
        raise click.ClickException(f"{exc.status} {exc.errors and exc.errors or ''}{exc.message}".strip()) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the evolution service: {exc}") from None


@evolution.command("submit")
@click.argument("request", default="-")
@_client_options
@click.option("--identity", help="Who submits (sent as X-ACGS-Identity when auth is off).")
@click.option("--wait", type=float, help="Wait up to this many seconds for a decision.")
@click.pass_context
def evolution_submit(ctx: click.Context, request: str, url: str | None, api_key: str | None, identity: str | None, wait: float | None) -> None:
    """Submit a change request: REQUEST is JSON, @file, or - for stdin."""
    body = _input_or_exit(request)

    async def call(client: Any) -> Any:
        submitted = await client.submit(body)
        if wait is not None and submitted.get("status") == "pending":
            return await client.wait_for_decision(submitted["request_id"], timeout=wait)
        return submitted

    _print_json(_evolution_call(ctx, url, api_key, identity, call))


@evolution.command("list")
@_client_options
@click.option("--status", help="Only requests in this status (pending, approved, ...).")
@click.option("--agent-id", help="Only this agent's requests.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def evolution_list(ctx: click.Context, url: str | None, api_key: str | None, status: str | None, agent_id: str | None, limit: int) -> None:
    """List change requests, newest first."""
    page = _evolution_call(ctx, url, api_key, None, lambda c: c.list_requests(status=status, agent_id=agent_id, limit=limit))
    _print_json(page)


def _verdict(verb: str) -> Callable[..., None]:
    @_client_options
    @click.option("--identity", help="The reviewer (sent as X-ACGS-Identity when auth is off).")
    @click.option("--reason", required=True, help="Why; kept in the request's history and the audit log.")
    @click.argument("request_id")
    @click.pass_context
    def command(ctx: click.Context, request_id: str, reason: str, url: str | None, api_key: str | None, identity: str | None) -> None:
        out = _evolution_call(ctx, url, api_key, identity, lambda c: getattr(c, verb)(request_id, reason))
        _print_json(out)

    command.__doc__ = f"{verb.capitalize()} a pending request as a reviewer."
    return command


evolution.command("approve")(_verdict("approve"))
evolution.command("reject")(_verdict("reject"))


# -- sandbox --------------------------------------------------------------------------------


@cli.group()
def sandbox() -> None:
    """Run code in the sandbox controller."""


@sandbox.command("run")
@click.argument("source", required=False)
@click.option("-c", "--code", help="Code to run (instead of SOURCE, a file or - for stdin).")
@click.option("-l", "--language", default="python", show_default=True)
@click.option("--runtime", default="auto", show_default=True, help="auto, bwrap, gvisor, firecracker or docker.")
@click.option("--agent-id", default="cli", show_default=True)
@click.option("--trust", type=float, default=0.9, show_default=True, help="The agent's trust level the constitution sees.")
@click.option("--timeout", "timeout_s", type=float, help="Wall-clock limit in seconds (default: the constitution's).")
@click.option("--memory-mb", type=int, help="Memory limit (default: the constitution's).")
@click.option("--network", is_flag=True, help="Ask for network access (the constitution decides).")
@_client_options
@click.pass_context
def sandbox_run(
    ctx: click.Context,
    source: str | None,
    code: str | None,
    language: str,
    runtime: str,
    agent_id: str,
    trust: float,
    timeout_s: float | None,
    memory_mb: int | None,
    network: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Run code under the sandbox controller and print its output; exits with the run's code."""
    import httpx

    if code is None:
        if source is None:
            raise click.UsageError("give SOURCE (a file, or - for stdin) or --code")
        code = sys.stdin.read() if source == "-" else Path(source).read_text()
    limits: dict[str, Any] = {}
    if timeout_s is not None:
        limits["timeout_s"] = timeout_s
    if memory_mb is not None:
        limits["memory_mb"] = memory_mb
    if network:
        limits["network"] = True
    body = {"language": language, "code": code, "runtime": runtime, "agent_id": agent_id, "agent": {"trust_level": trust}, "limits": limits}
    base = _service_url(ctx, "sandbox", url)
    try:
        response = httpx.post(f"{base}/execute", json=body, headers=_auth_headers(api_key), timeout=None)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the sandbox controller at {base}: {exc}") from None
    try:
        result = response.json()
    except ValueError:
        raise click.ClickException(f"sandbox controller answered {response.status_code}: {response.text[:300]}") from None
    sys.stdout.write(result.get("stdout", ""))
    sys.stderr.write(result.get("stderr", ""))
    status = result.get("status")
    if status != "completed":
        summary = {k: result.get(k) for k in ("status", "execution_id", "runtime", "limits_hit", "violations", "reasons", "error", "message") if result.get(k)}
        click.echo(f"acgs: sandbox run {json.dumps(summary)}", err=True)
        ctx.exit(result.get("exit_code") or 1)
    ctx.exit(result.get("exit_code") or 0)


# -- commands from the other layers ---------------------------------------------------------


def _add_optional(module: str, attr: str) -> None:
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError:
        return
    command = getattr(mod, attr, None)
    if isinstance(command, click.Command):
        cli.add_command(command)


_add_optional("acgs.security.cli", "keys")
_add_optional("acgs.registry.cli", "agents")
_add_optional("acgs.benchcli", "bench")
_add_optional("acgs.mcp.cli", "mcp")


def main(argv: list[str] | None = None) -> int:
    """The console script: runs ``acgs`` and returns its exit status."""
    try:
        cli.main(args=argv, prog_name="acgs", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
