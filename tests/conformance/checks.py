"""The checks both conformance test modules make (tests/test_conformance.py through the Wasm,
tests/conformance/test_plan_conformance.py through the plan): run the suite once per module,
every skip explained, the pass rate at or above a floor."""

from __future__ import annotations

import os

import pytest

from tests.conformance import runner
from tests.conformance.cases import SetupError
from tests.conformance.runner import Report


def run_suite(argv: list[str]) -> Report:
    """Runs the cases with the runner's arguments `argv`; skips when acgs, opa or the OPA cases
    are missing, unless ACGS_CONFORMANCE_REQUIRED is set (then it fails instead)."""
    args = runner.parse_args(argv)
    try:
        report, meta = runner.run(args)
    except SetupError as exc:
        if os.environ.get("ACGS_CONFORMANCE_REQUIRED"):
            pytest.fail(f"conformance suite unavailable: {exc}")
        pytest.skip(f"conformance suite unavailable: {exc}")
    # Shown by pytest on failure (or with -s).
    runner.print_report(report, meta, args)
    return report


def assert_skips_explained(report: Report) -> None:
    unexplained = [c.note for c in report.skipped if not c.skip_reason]
    assert not unexplained, f"skipped without a reason: {unexplained}"


def assert_pass_rate(report: Report, floor: float, what: str = "pass rate") -> None:
    assert report.compiled, "no case compiled"
    rate = report.pass_rate
    assert rate is not None
    failed = [f"{c.note} ({o.cause})" for c, o, _ in report.failed]
    assert rate >= floor, (
        f"{what} {rate:.2%} < {floor:.1%}: "
        f"{len(report.passed)}/{len(report.compiled)} passed; first failures: {failed[:20]}"
    )
