"""OPA's conformance suite, evaluated through ACGS's Wasm host.

Slow (compiles every case once; later runs use the bundle cache). Deselect
with ``-m "not conformance"``. For the detailed report run
``python -m tests.conformance``. Skips when acgs, opa or the OPA cases are
missing, unless ACGS_CONFORMANCE_REQUIRED is set (then it fails instead).
"""

from __future__ import annotations

import os

import pytest

from tests.conformance import runner
from tests.conformance.cases import SetupError

pytestmark = pytest.mark.conformance

MIN_PASS_RATE = 0.99


@pytest.fixture(scope="module")
def conformance_run():
    args = runner.parse_args(["--no-diff", "--max-listed", "10"])
    try:
        report, meta = runner.run(args)
    except SetupError as exc:
        if os.environ.get("ACGS_CONFORMANCE_REQUIRED"):
            pytest.fail(f"conformance suite unavailable: {exc}")
        pytest.skip(f"conformance suite unavailable: {exc}")
    # Shown by pytest on failure (or with -s).
    runner.print_report(report, meta, args)
    return report


def test_every_skip_has_a_reason(conformance_run):
    unexplained = [c.note for c in conformance_run.skipped if not c.skip_reason]
    assert not unexplained, f"skipped without a reason: {unexplained}"


def test_pass_rate(conformance_run):
    report = conformance_run
    assert report.compiled, "no case compiled"
    rate = report.pass_rate
    assert rate is not None
    failed = [f"{c.note} ({o.cause})" for c, o, _ in report.failed]
    assert rate >= MIN_PASS_RATE, (
        f"pass rate {rate:.2%} < {MIN_PASS_RATE:.0%}: "
        f"{len(report.passed)}/{len(report.compiled)} passed; first failures: {failed[:20]}"
    )
