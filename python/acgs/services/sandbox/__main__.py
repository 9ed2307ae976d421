"""``python -m acgs.services.sandbox [--host H] [--port P] [--bundle B] [--data-dir D]
[--runs-dir R]``: the sandbox controller, on 127.0.0.1:8001 by default; unset options come
from ``ACGS_*`` variables (see :class:`~acgs.services.sandbox.settings.SandboxSettings`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from acgs.services.sandbox import SandboxSettings, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m acgs.services.sandbox", description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--runs-dir", type=Path)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    serve(SandboxSettings.from_env(**overrides))


if __name__ == "__main__":
    main()
