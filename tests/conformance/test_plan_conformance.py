"""OPA's conformance suite, evaluated through ACGS's plan evaluator (``evaluator="plan"``).

Each case is built with ``opa build -t wasm`` and ``-t plan`` (cached beside the Wasm bundles),
so the skips are the Wasm run's; cases whose plan ``opa`` does not build count as not compiled.
The detailed report: ``python -m tests.conformance --evaluator plan``. Skips when acgs, opa or
the OPA cases are missing, unless ACGS_CONFORMANCE_REQUIRED is set (then it fails instead).
"""

from __future__ import annotations

import os

import pytest

from tests.conformance.checks import assert_pass_rate, assert_skips_explained, run_suite
from tests.conformance.runner import Report

# About 7 minutes of CPU on the project's 2-core machines (every case's bundle loaded again):
# opt-in (ACGS_PLAN_CONFORMANCE=1, `make conformance-plan`) until the plan is the default path.
pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        not os.environ.get("ACGS_PLAN_CONFORMANCE"), reason="the plan's conformance run is opt-in: ACGS_PLAN_CONFORMANCE=1"
    ),
]

# The goal is the Wasm run's 0.99 (issue 15). Measured now: 99.83% (2384/2388). What is left:
# rego.parse_module, which the host does not implement (2 cases, the Wasm path fails them too);
# the host's yaml.is_valid on a multi-document stream and its opa.runtime (which returns the
# runtime, where the case wants {}), both shared with the Wasm path. It only guards against
# going back.
MIN_PASS_RATE = 0.995


@pytest.fixture(scope="module")
def plan_run() -> Report:
    return run_suite(["--evaluator", "plan", "--no-diff", "--max-listed", "10"])


def test_plan_skips_are_the_wasm_skips(plan_run: Report) -> None:
    assert_skips_explained(plan_run)


def test_plan_pass_rate(plan_run: Report) -> None:
    assert_pass_rate(plan_run, MIN_PASS_RATE, what="plan pass rate")
