"""``python -m acgs.services.policy [--host H] [--port P] [--workers N] [--bundle B]``: serve
the policy service; unset options come from ``ACGS_*`` variables."""

from __future__ import annotations

import argparse
from pathlib import Path

from acgs.services.policy import PolicySettings, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m acgs.services.policy", description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--bundle", type=Path)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    serve(PolicySettings.from_env(**overrides))


main()
