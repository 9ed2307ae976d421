"""``python -m acgs.services.audit [--host H] [--port P] [--data-dir D] [--database-url U]``:
serve the audit service; unset options come from ``ACGS_*`` variables."""

from __future__ import annotations

import argparse
from pathlib import Path

from acgs.services.audit import AuditSettings, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m acgs.services.audit", description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--database-url")
    parser.add_argument("--checkpoint-interval", type=float)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    serve(AuditSettings.from_env(**overrides))


if __name__ == "__main__":
    main()
