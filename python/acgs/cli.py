"""The ``acgs`` command line: evaluate a policy bundle, run the services, verify and export the
audit log, show version information."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from acgs import SEED_REQUEST, Engine, __version__, default_bundle_path
from acgs.errors import AcgsError

EXAMPLE_INPUT = SEED_REQUEST


def _read_input(text: str | None) -> object:
    if text is None:
        return EXAMPLE_INPUT
    if text == "-":
        return json.load(sys.stdin)
    if text.startswith("@"):
        return json.loads(Path(text[1:]).read_text())
    return json.loads(text)


def _cmd_eval(args: argparse.Namespace) -> int:
    engine = Engine.load(args.bundle or default_bundle_path())
    try:
        value = _read_input(args.input)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"acgs: cannot read input: {exc}", file=sys.stderr)
        return 2
    entrypoint = args.entrypoint
    raw = engine.evaluate_json(json.dumps(value).encode(), entrypoint)
    out = {
        "entrypoint": entrypoint or engine.entrypoints[0],
        "bundle_digest": engine.bundle_digest,
        "result_set": json.loads(raw),
    }
    print(json.dumps(out, indent=2))
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    engine = Engine.load(args.bundle or default_bundle_path())
    try:
        value = _read_input(args.input)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"acgs: cannot read input: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(engine.decide(value), indent=2))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    engine = Engine.load(args.bundle or default_bundle_path())
    info = {
        "bundle_digest": engine.bundle_digest,
        "revision": engine.revision,
        "abi_version": engine.abi_version,
        "entrypoints": engine.entrypoints,
        "builtins": engine.builtins,
    }
    print(json.dumps(info, indent=2))
    return 0


def _cmd_serve_evolution(args: argparse.Namespace) -> int:
    from acgs.services.evolution import EvolutionSettings, serve

    if args.workers is not None:
        print("acgs: the evolution service runs one worker; --workers is for the policy service", file=sys.stderr)
        return 2
    overrides = {k: getattr(args, k) for k in ("host", "port", "bundle") if getattr(args, k) is not None}
    try:
        settings = EvolutionSettings.from_env(**overrides)
    except ValueError as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


def _cmd_serve_sandbox(args: argparse.Namespace) -> int:
    from acgs.services.sandbox import SandboxSettings, serve

    if args.workers is not None:
        print("acgs: the sandbox controller runs one worker; --workers is for the policy service", file=sys.stderr)
        return 2
    overrides = {k: getattr(args, k) for k in ("host", "port", "bundle") if getattr(args, k) is not None}
    try:
        settings = SandboxSettings.from_env(**overrides)
    except ValueError as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


def _cmd_serve_audit(args: argparse.Namespace) -> int:
    from acgs.services.audit import AuditSettings, serve

    if args.workers is not None:
        print("acgs: the audit service runs one worker; --workers is for the policy service", file=sys.stderr)
        return 2
    overrides = {k: getattr(args, k) for k in ("host", "port") if getattr(args, k) is not None}
    try:
        settings = AuditSettings.from_env(**overrides)
    except ValueError as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.service == "evolution":
        return _cmd_serve_evolution(args)
    if args.service == "sandbox":
        return _cmd_serve_sandbox(args)
    if args.service == "audit":
        return _cmd_serve_audit(args)
    if args.service != "policy":
        print("acgs: use --service policy|evolution|audit|sandbox", file=sys.stderr)
        return 2
    from acgs.services.policy import PolicySettings, serve

    overrides = {k: getattr(args, k) for k in ("host", "port", "workers", "bundle") if getattr(args, k) is not None}
    try:
        settings = PolicySettings.from_env(**overrides)
    except ValueError as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acgs", description="ACGS governance engine")
    parser.add_argument("--version", action="version", version=f"acgs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="evaluate an input against a policy bundle")
    ev.add_argument("--bundle", help="bundle path (default: the bundle shipped with ACGS)")
    ev.add_argument("-e", "--entrypoint", help="entrypoint, e.g. acgs/main/decision (default: the first)")
    ev.add_argument("-i", "--input", help="input JSON, @file, or - for stdin (default: the seed request)")
    ev.set_defaults(func=_cmd_eval)

    de = sub.add_parser("decide", help="decide a constitution request (cache, fast path, fail-closed)")
    de.add_argument("--bundle", help="bundle path (default: the constitution shipped with ACGS)")
    de.add_argument("-i", "--input", help="request JSON, @file, or - for stdin (default: the seed request)")
    de.set_defaults(func=_cmd_decide)

    ins = sub.add_parser("inspect", help="show a bundle's digest, entrypoints and builtins")
    ins.add_argument("--bundle", help="bundle path (default: the bundle shipped with ACGS)")
    ins.set_defaults(func=_cmd_inspect)

    srv = sub.add_parser("serve", help="run an ACGS service (settings from ACGS_* variables and these flags)")
    srv.add_argument(
        "--service",
        choices=["policy", "evolution", "audit", "sandbox"],
        help="which service (policy: port 8004, evolution: port 8002, audit: port 8003, sandbox: port 8001)",
    )
    srv.add_argument("--host")
    srv.add_argument("--port", type=int)
    srv.add_argument("--workers", type=int)
    srv.add_argument("--bundle", type=Path, help="policy bundle (default: the bundle shipped with ACGS)")
    srv.set_defaults(func=_cmd_serve)

    from acgs.audit.cli import add_audit_commands

    add_audit_commands(sub)

    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except AcgsError as exc:
        print(f"acgs: {exc.code}: {exc}", file=sys.stderr)
        return 1
    return code
