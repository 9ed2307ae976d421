"""OPA's conformance suite, evaluated through ACGS's plan evaluator (``evaluator="plan"``).

Each case is built with ``opa build -t wasm`` and ``-t plan`` (cached beside the Wasm bundles),
so the skips are the Wasm run's; cases whose plan ``opa`` does not build count as not compiled.
The detailed report: ``python -m tests.conformance --evaluator plan``. Skips when acgs, opa or
the OPA cases are missing, unless ACGS_CONFORMANCE_REQUIRED is set (then it fails instead).
"""

from __future__ import annotations

import os

import pytest

from tests.conformance import runner
from tests.conformance.cases import SetupError

# About 7 minutes of CPU on the project's 2-core machines (every case's bundle loaded again):
# opt-in (ACGS_PLAN_CONFORMANCE=1, `make conformance-plan`) until the plan is the default path.
pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        not os.environ.get("ACGS_PLAN_CONFORMANCE"), reason="the plan's conformance run is opt-in: ACGS_PLAN_CONFORMANCE=1"
    ),
]

# The goal is the Wasm run's 0.99 (issue 15). Measured now: 95.3% (2276/2388). What is left:
# builtins of OPA's Wasm C library the plan evaluator lacks (json.remove, json.filter,
# regex.find_all_string_submatch_n, graph.reachable, array.flatten, json.marshal/unmarshal/
# is_valid, regex.is_valid: 70 cases) and `with` on rules and functions (about 20 cases).
# Raise this as they land; it only guards against going back.
MIN_PASS_RATE = 0.95


@pytest.fixture(scope="module")
def plan_run():
    args = runner.parse_args(["--evaluator", "plan", "--no-diff", "--max-listed", "10"])
    try:
        report, meta = runner.run(args)
    except SetupError as exc:
        if os.environ.get("ACGS_CONFORMANCE_REQUIRED"):
            pytest.fail(f"conformance suite unavailable: {exc}")
        pytest.skip(f"conformance suite unavailable: {exc}")
    runner.print_report(report, meta, args)
    return report


def test_plan_skips_are_the_wasm_skips(plan_run):
    unexplained = [c.note for c in plan_run.skipped if not c.skip_reason]
    assert not unexplained, f"skipped without a reason: {unexplained}"


def test_plan_pass_rate(plan_run):
    report = plan_run
    assert report.compiled, "no case compiled"
    rate = report.pass_rate
    assert rate is not None
    failed = [f"{c.note} ({o.cause})" for c, o, _ in report.failed]
    assert rate >= MIN_PASS_RATE, (
        f"plan pass rate {rate:.2%} < {MIN_PASS_RATE:.0%}: "
        f"{len(report.passed)}/{len(report.compiled)} passed; first failures: {failed[:20]}"
    )
