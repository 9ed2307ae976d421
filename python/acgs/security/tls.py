"""TLS for the services: the uvicorn keyword arguments the settings ask for.

uvicorn does not put the client certificate in the ASGI scope (it implements no ASGI TLS
extension), so mutual TLS here admits or refuses a connection; it does not name a principal.
Routes still need an API key or JWT when authentication is on."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from acgs.security.settings import SecuritySettings


def _readable(path: Path, var: str) -> str:
    if not path.is_file():
        raise ValueError(f"{var}={str(path)!r}: no such file")
    return str(path)


def uvicorn_tls_options(settings: SecuritySettings) -> dict[str, Any]:
    """``ssl_certfile``, ``ssl_keyfile``, and with a client CA ``ssl_ca_certs`` plus
    ``ssl_cert_reqs=CERT_REQUIRED`` (a client without a certificate that CA signed is refused
    during the handshake). Empty when TLS is not configured. Missing files raise
    ``ValueError`` naming the variable."""
    settings.validate()
    if settings.tls_cert_file is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": _readable(settings.tls_cert_file, "ACGS_TLS_CERT_FILE")}
    if settings.tls_key_file is not None:
        options["ssl_keyfile"] = _readable(settings.tls_key_file, "ACGS_TLS_KEY_FILE")
    if settings.tls_client_ca_file is not None:
        options["ssl_ca_certs"] = _readable(settings.tls_client_ca_file, "ACGS_TLS_CLIENT_CA_FILE")
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options
