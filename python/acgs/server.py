"""``acgs serve``: the four services in one process, or one of them, from one configuration.

In one process each service keeps its own app, port, metrics registry and background tasks;
they share the event loop and stop together. Unless the configuration says otherwise, the
policy, evolution and sandbox services send their audit events to the audit service of the
same process (over loopback HTTP, the same path a multi-host deployment takes), so every
decision, change request and execution lands in the one hash-chained log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

from acgs.config import AcgsConfig

log = logging.getLogger("acgs.server")

#: Start order: the audit service first, since the others deliver to it (they retry until it
#: answers, so the order is a courtesy, not a requirement).
ORDER = ("audit", "policy", "evolution", "sandbox")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def audit_url(config: AcgsConfig) -> str:
    """Where the other services reach this configuration's audit service."""
    audit = config.audit
    scheme = "https" if _tls_enabled(config) else "http"
    return f"{scheme}://{_loopback(audit.host)}:{audit.port}"


def _tls_enabled(config: AcgsConfig) -> bool:
    security = config.sections.get("security")
    return bool(security is not None and getattr(security, "tls_cert_file", None))


def wire(config: AcgsConfig) -> AcgsConfig:
    """The configuration with audit delivery filled in where it was left unset: decision logs,
    evolution events and sandbox executions go to the audit service."""
    url = audit_url(config)
    if not config.is_set("policy", "decision_log"):
        config = config.replace("policy", decision_log=url)
    if not config.is_set("evolution", "audit_url"):
        config = config.replace("evolution", audit_url=url)
    if not config.is_set("sandbox", "audit_url"):
        config = config.replace("sandbox", audit_url=url)
    return config


def create_app(name: str, config: AcgsConfig, *, session_ledger: Any = None) -> Any:
    """The ASGI app of service ``name`` built from ``config``. ``session_ledger``: the record
    of each session's tool decisions (``acgs.trust.sessions``) the policy and evolution
    services of one process share (the policy service's own when None)."""
    extra = _common_kwargs(name, config)
    if name == "policy":
        from acgs.services.policy.app import create_app as policy_app

        return policy_app(config.policy, session_ledger=session_ledger, **extra)
    if name == "evolution":
        import inspect

        from acgs.services.evolution.app import create_app as evolution_app

        if session_ledger is not None and "session_ledger" in inspect.signature(evolution_app).parameters:
            extra["session_ledger"] = session_ledger
        return evolution_app(config.evolution, **extra)
    if name == "audit":
        from acgs.services.audit.app import create_app as audit_app

        return audit_app(config.audit, **extra)
    if name == "sandbox":
        from acgs.services.sandbox.app import create_app as sandbox_app

        return sandbox_app(config.sandbox, **extra)
    raise ValueError(f"unknown service {name!r}")


def _common_kwargs(name: str, config: AcgsConfig) -> dict[str, Any]:
    """Cross-service settings a service's ``create_app`` accepts (security, observability)."""
    import inspect

    from acgs.services import audit, evolution, policy, sandbox

    module = {"policy": policy, "evolution": evolution, "audit": audit, "sandbox": sandbox}[name]
    params = inspect.signature(module.create_app).parameters
    keys = ("security", "observability", "agent_registry")
    return {key: config.sections[key] for key in keys if key in params and key in config.sections}


def uvicorn_options(name: str, config: AcgsConfig) -> dict[str, Any]:
    """Host, port, log level and TLS options of one service."""
    settings = getattr(config, name)
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": settings.log_level}
    security = config.sections.get("security")
    if security is not None:
        try:
            from acgs.security import tls_options  # type: ignore[import-not-found,attr-defined,unused-ignore]
        except ImportError:
            pass
        else:
            options.update(tls_options(security))
    return options


def check_bind(config: AcgsConfig, names: tuple[str, ...]) -> None:
    """Refuses to listen beyond loopback with authentication off unless the configuration says
    ``insecure`` (``acgs.security.bind``); raises ``OpenBindRefused``, a ``ConfigError``."""
    from acgs.security.bind import check_bind as check

    check([(name, getattr(config, name).host, getattr(config, name).port) for name in names], config.security)


def serve_one(name: str, config: AcgsConfig) -> None:
    """Runs one service under uvicorn until stopped (the policy service may fork workers)."""
    _configure_logging(config)
    check_bind(config, (name,))
    if name == "policy" and config.policy.workers > 1:
        from acgs.services.policy import serve

        serve(config.policy)
        return
    options = uvicorn_options(name, config)
    uvicorn.run(create_app(name, config), access_log=False, log_config=None, **options)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the process (one handler stops them all)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _internal_credential(config: AcgsConfig) -> Callable[[], Awaitable[None]] | None:
    """With authentication on and no ``ACGS_AUDIT_API_KEY`` given, a key of the ``service`` role
    for this process's own deliveries to its audit service (decision logs, evolution and sandbox
    events), created now and revoked at shutdown. Returns the revocation, or None."""
    security = config.sections.get("security")
    if security is None or not getattr(security, "auth", False) or os.environ.get("ACGS_AUDIT_API_KEY"):
        return None
    from acgs.security.keys import create_key, open_key_store, revoke_key

    store = open_key_store(security.resolved_key_store())
    key, token = await create_key(store, f"acgs-serve-{socket.gethostname()}-{os.getpid()}", ("service",))
    os.environ["ACGS_AUDIT_API_KEY"] = token
    log.info("created key %s (role service) for deliveries to the audit service; revoked at shutdown", key.id)

    async def revoke() -> None:
        os.environ.pop("ACGS_AUDIT_API_KEY", None)
        await revoke_key(store, key.id)

    return revoke


async def _serve_all(config: AcgsConfig, names: tuple[str, ...], ready: Callable[[], None] | None = None) -> int:
    revoke = await _internal_credential(config)
    try:
        return await _serve_all_apps(config, names, ready)
    finally:
        if revoke is not None:
            await revoke()


def build_apps(config: AcgsConfig, names: tuple[str, ...]) -> dict[str, Any]:
    """The apps of ``names`` for one process. The policy app is built first: its session
    ledger (each session's tool decisions) is the one the evolution app settles action
    requests in, so the process keeps one record of each session."""
    apps: dict[str, Any] = {}
    ledger = None
    for name in sorted(names, key=lambda n: n != "policy"):
        apps[name] = create_app(name, config, session_ledger=ledger)
        if name == "policy":
            ledger = getattr(apps[name].state, "session_ledger", None)
    return {name: apps[name] for name in names}


async def _serve_all_apps(config: AcgsConfig, names: tuple[str, ...], ready: Callable[[], None] | None) -> int:
    servers: dict[str, Any] = {}
    apps = build_apps(config, names)
    for name in names:
        app = apps[name]
        # Logging is set up once for the process (configure_logging); uvicorn leaves it alone.
        uv = uvicorn.Config(app, access_log=False, log_config=None, **uvicorn_options(name, config))
        servers[name] = _Server(uv)

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(sig: int, frame: FrameType | None = None) -> None:
        for server in servers.values():
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig, None)

    failed: list[str] = []

    async def run(name: str, server: Any) -> None:
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits when its app or socket fails to start: stop the rest as well.
            failed.append(name)
            log.error("the %s service failed to start; stopping the others", name)
            stop(signal.SIGTERM)

    tasks = [asyncio.create_task(run(name, server), name=f"acgs-serve-{name}") for name, server in servers.items()]
    if ready is not None:

        async def announce() -> None:
            while not all(s.started for s in servers.values()):
                if stopping.is_set():
                    return
                await asyncio.sleep(0.05)
            ready()

        tasks.append(asyncio.create_task(announce()))
    try:
        await asyncio.gather(*tasks)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 1 if failed else 0


def _configure_logging(config: AcgsConfig) -> None:
    """One handler for every logger of the process, in the configured format (text or JSON)."""
    from acgs.services.common.observability import configure_logging

    configure_logging(config.sections.get("observability"))


def serve_all(config: AcgsConfig, names: tuple[str, ...] = ORDER) -> None:
    """Runs the services in ``names`` in this process until SIGINT/SIGTERM; exits 1 if one of
    them failed to start."""
    _configure_logging(config)
    check_bind(config, names)
    if config.policy.workers > 1:
        log.warning("policy workers = %d ignored: all services share one process", config.policy.workers)
    config = wire(config)

    def ready() -> None:
        scheme = "https" if _tls_enabled(config) else "http"
        lines = [f"  {name:<9} {scheme}://{_loopback(getattr(config, name).host)}:{getattr(config, name).port}" for name in names]
        print("ACGS is up:\n" + "\n".join(lines), file=sys.stderr, flush=True)

    try:
        import uvloop

        runner: Callable[..., int] = uvloop.run
    except ImportError:
        runner = asyncio.run
    code = runner(_serve_all(config, names, ready))
    if code:
        raise SystemExit(code)
