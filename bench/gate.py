#!/usr/bin/env python3
"""The CI performance gate: the quick suite (`acgs bench`) held to bench/reference.json.

    python bench/gate.py               # `make bench-gate`: exit 1 when a ratio drops by > 20%
    python bench/gate.py --update      # `make bench-reference`: record this machine's ratios

Any other `acgs bench` option passes through (`--rounds`, `--peer`, `--max-drop`, ...). It runs
from the checkout so that `opa bench` finds the Rego sources under policies/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "python") not in sys.path:
    sys.path.insert(0, str(ROOT / "python"))

from acgs.benchcli import bench  # noqa: E402


def main() -> None:
    os.chdir(ROOT)
    args = sys.argv[1:]
    defaults = ["--reference", str(ROOT / "bench" / "reference.json")]
    if "--update" not in args:
        defaults.insert(0, "--gate")
    bench.main([*defaults, *args], prog_name="bench/gate.py")


if __name__ == "__main__":
    main()
