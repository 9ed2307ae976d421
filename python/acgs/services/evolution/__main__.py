"""``python -m acgs.services.evolution [--host H] [--port P] [--bundle B] [--database-url U]``:
serve the evolution service; unset options come from ``ACGS_*`` variables."""

from __future__ import annotations

import argparse
from pathlib import Path

from acgs.services.evolution import EvolutionSettings, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m acgs.services.evolution", description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    serve(EvolutionSettings.from_env(**overrides))


if __name__ == "__main__":
    main()
