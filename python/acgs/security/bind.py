"""Where a service may listen. With authentication off every claim a client sends is believed
(who it is, its trust level, its sandbox tier), so the services listen on loopback only unless
the operator says otherwise explicitly (``--insecure``, ``[security] insecure = true``,
``ACGS_INSECURE=true``)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from acgs.config import ConfigError
from acgs.security.settings import SecuritySettings

log = logging.getLogger("acgs.security")


class OpenBindRefused(ConfigError):
    """A service would listen beyond loopback with authentication off."""

    code = "open_bind_refused"


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the service on this machine: ``localhost`` or a
    loopback address (127.0.0.0/8, ::1). ``""``, ``0.0.0.0`` and ``::`` are every interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


def check_bind(addresses: Iterable[tuple[str, str, int]], security: SecuritySettings) -> None:
    """Refuses (``OpenBindRefused``) to let services listen beyond loopback with
    authentication off, unless ``security.insecure``; then logs what that means.
    ``addresses``: (service, host, port) of each service about to listen."""
    if security.auth:
        return
    exposed = [(name, host, port) for name, host, port in addresses if not is_loopback(host)]
    if not exposed:
        return
    where = ", ".join(f"{name} on {host or '*'}:{port}" for name, host, port in exposed)
    if not security.insecure:
        raise OpenBindRefused(
            f"refusing to listen beyond loopback with authentication off ({where}): anyone who can "
            "reach the port would be believed whatever they claim. Listen on 127.0.0.1, turn "
            "authentication on ([security] auth = true or ACGS_AUTH=true, then `acgs keys create`), "
            "or accept this explicitly with --insecure ([security] insecure = true or ACGS_INSECURE=true)"
        )
    log.warning(
        "INSECURE: listening beyond loopback with authentication off (%s). Anyone who can reach "
        "the port is trusted with every claim it makes: its identity, trust level and sandbox tier; "
        "it can approve change requests, write audit events and run code. Use only on a network "
        "where every host is trusted.",
        where,
    )
