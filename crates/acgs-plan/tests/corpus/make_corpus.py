"""Writes the seed inputs of the plan evaluator's differential test (one JSON text per line, per
entrypoint) from the Python suite's request generators, so the cargo test needs no Python.

    .venv/bin/python crates/acgs-plan/tests/corpus/make_corpus.py

The Rust test (tests/differential.rs) multiplies each seed: numbers respelt, fields dropped,
retyped and moved to boundaries."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from tests.security.test_numbers import CASES as NUMBER_CASES  # noqa: E402
from tests.security.test_numbers_sandbox_evolution import EVOLUTION_CASES, SANDBOX_CASES  # noqa: E402
from tests.test_constitution import GENERATORS  # noqa: E402
from tests.test_native import native_request  # noqa: E402
from tests.test_tools_policy import tool_call  # noqa: E402

SEEDS = 300


def main() -> None:
    rng = random.Random("acgs-plan-corpus")
    files: dict[str, list[str]] = {}
    for entrypoint, gen in GENERATORS.items():
        if entrypoint == "acgs/main/allow":
            continue  # main/decision's inputs serve both
        files[entrypoint] = [json.dumps(gen(rng), ensure_ascii=False) for _ in range(SEEDS)]
    files["acgs/main/decision"] += [json.dumps(native_request(rng), ensure_ascii=False) for _ in range(SEEDS)]
    files["acgs/tools/decision"] += [tool_call(rng) for _ in range(SEEDS)]
    # The number tables of tests/security: every bound of the constitution, spelt many ways.
    files["acgs/main/decision"] += [raw.decode() for raw in NUMBER_CASES]
    files["acgs/sandbox/decision"] += [raw.decode() for _, raw in SANDBOX_CASES]
    files["acgs/evolution/decision"] += [raw.decode() for _, raw in EVOLUTION_CASES]
    for entrypoint, lines in files.items():
        name = entrypoint.replace("/", "_") + ".jsonl"
        (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} seeds")


if __name__ == "__main__":
    main()
