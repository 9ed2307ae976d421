"""``python -m acgs.services.sandbox``: the sandbox controller on 127.0.0.1:8001 (see
:class:`~acgs.services.sandbox.settings.SandboxSettings` for the ``ACGS_*`` variables)."""

from __future__ import annotations

import logging

import uvicorn

from acgs.services.sandbox.app import create_app
from acgs.services.sandbox.settings import SandboxSettings


def main() -> None:
    settings = SandboxSettings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
