"""OPA's conformance suite, evaluated through ACGS's Wasm host.

Slow (compiles every case once; later runs use the bundle cache). Deselect
with ``-m "not conformance"``. For the detailed report run
``python -m tests.conformance``. Skips when acgs, opa or the OPA cases are
missing, unless ACGS_CONFORMANCE_REQUIRED is set (then it fails instead).
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import assert_pass_rate, assert_skips_explained, run_suite
from tests.conformance.runner import Report

pytestmark = pytest.mark.conformance

MIN_PASS_RATE = 0.99


@pytest.fixture(scope="module")
def conformance_run() -> Report:
    return run_suite(["--no-diff", "--max-listed", "10"])


def test_every_skip_has_a_reason(conformance_run: Report) -> None:
    assert_skips_explained(conformance_run)


def test_pass_rate(conformance_run: Report) -> None:
    assert_pass_rate(conformance_run, MIN_PASS_RATE)
