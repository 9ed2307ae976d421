"""The performance gate (bench/gate.py): its statistics, and the gate run for real on this machine
with this checkout as both base and candidate: it passes on the unchanged candidate and fails
when every measured candidate call is made three calls (ACGS_BENCH_SLOWDOWN=3), in time and in
instructions. Also `acgs bench`, the peer ratios, which report and no longer gate.

The gate runs with few, short rounds and two benchmarks here, so the file takes about a minute;
a threefold slowdown is far outside any noise band, so the failing case cannot pass by noise.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acgs.perf import gate, quick

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "bench" / "gate.py"
FAST = ["--base", "HEAD", "--rounds", "7", "--seconds", "0.05",
        "--benchmark", "decide/full", "--benchmark", "wasm/example"]


# ---- the statistics ----------------------------------------------------------------------------


def test_the_median_band_comes_from_order_statistics() -> None:
    # 15 rounds: P(Binomial(15, 1/2) <= 3) = 0.018 <= 0.025 < P(<= 4) = 0.059, so the 95% band
    # runs from the 4th smallest to the 4th largest value.
    values = [float(v) for v in range(1, 16)]
    random.Random(1).shuffle(values)
    assert gate.median_band(values) == (4.0, 12.0)
    # Fewer than six values cannot reach 95%: the band is their whole range.
    assert gate.median_band([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)
    assert gate.median_band([7.0]) == (7.0, 7.0)
    # A lower confidence narrows the band.
    lo, hi = gate.median_band(values, 0.5)
    assert 4.0 < lo <= hi < 12.0
    with pytest.raises(ValueError):
        gate.median_band([])
    with pytest.raises(ValueError):
        gate.median_band(values, 1.0)


def comparison(ratios: list[float], base_instructions: float | None = None,
               candidate_instructions: float | None = None) -> gate.Comparison:
    return gate.Comparison("b", [100.0] * len(ratios), [100.0 * r for r in ratios],
                           base_instructions, candidate_instructions)


def test_a_slowdown_fails_only_when_the_whole_band_is_past_the_tolerance() -> None:
    steady_slow = gate.Verdict(comparison([1.09, 1.10, 1.11, 1.08, 1.12, 1.10, 1.09, 1.11, 1.10]))
    assert steady_slow.slower_in_time and not steady_slow.ok
    assert "SLOWER beyond the noise band" in steady_slow.message()
    # The same median with rounds spread from -10% to +30%: noise cannot be ruled out, so it
    # passes, and it is the kind of result the gate measures again before judging.
    noisy = gate.Verdict(comparison([0.90, 1.30, 1.10, 0.95, 1.25, 1.10, 1.00, 1.20, 1.10]))
    assert not noisy.slower_in_time and noisy.unsettled and noisy.ok
    # Faster, or equal within noise: passes and is not measured again.
    for ratios in ([0.8] * 9, [0.98, 1.02, 1.0, 1.01, 0.99, 1.03, 0.97, 1.0, 1.0]):
        v = gate.Verdict(comparison(ratios))
        assert v.ok and not v.unsettled
    # The tolerance is configurable.
    assert gate.Verdict(comparison([1.03] * 9), tolerance=0.02).slower_in_time
    assert not gate.Verdict(comparison([1.03] * 9), tolerance=0.05).slower_in_time


def test_more_instructions_fail_even_when_time_cannot_tell() -> None:
    noisy = [0.90, 1.30, 1.10, 0.95, 1.25, 1.10, 1.00, 1.20, 1.10]
    v = gate.Verdict(comparison(noisy, 10_000, 10_500))
    assert v.more_instructions and not v.ok
    assert "instructions per call 10,000 -> 10,500 (+5.00%" in v.message()
    assert gate.Verdict(comparison(noisy, 10_000, 10_200)).ok  # +2% is within the default 3%
    assert gate.Verdict(comparison(noisy)).comparison.instruction_ratio is None


# ---- the gate, run for real --------------------------------------------------------------------


def run_gate(*args: str, slowdown: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ACGS_BENCH_SLOWDOWN"}
    if slowdown is not None:
        env["ACGS_BENCH_SLOWDOWN"] = str(slowdown)
    return subprocess.run([sys.executable, str(GATE), *FAST, *args], capture_output=True, text=True, env=env,
                          timeout=1800, check=False)


def verdict_lines(stdout: str) -> dict[str, str]:
    return {line.split()[1].rstrip(":"): line for line in stdout.splitlines() if line.startswith(("ok ", "FAIL "))}


def test_the_gate_passes_on_an_unchanged_candidate(tmp_path: Path) -> None:
    out = run_gate("--no-instructions", "--json", str(tmp_path / "gate.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gate: passed" in out.stdout
    assert set(verdict_lines(out.stdout)) == {"decide/full", "wasm/example"}
    doc = json.loads((tmp_path / "gate.json").read_text())
    assert doc["schema"] == "acgs-bench-gate/1" and doc["run"]["base_from"] == "--base"
    for b in doc["benchmarks"]:
        assert len(b["base_ns"]) == len(b["candidate_ns"]) >= 7 and b["ok"]


def test_the_gate_fails_on_a_slowed_candidate() -> None:
    counting = shutil.which("valgrind") is not None
    out = run_gate(*([] if counting else ["--no-instructions"]), slowdown=3)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "gate: FAILED" in out.stdout
    lines = verdict_lines(out.stdout)
    for name in ("decide/full", "wasm/example"):
        assert lines[name].startswith("FAIL") and "SLOWER beyond the noise band" in lines[name], lines[name]
    if counting:
        # Three calls for one: about three times the instructions, which no load can fake.
        for line in lines.values():
            assert "MORE INSTRUCTIONS" in line, line
            change = float(line.split("instructions per call")[1].split("(")[1].split("%")[0])
            assert 150 < change < 250, line


def test_the_candidate_is_this_checkout_as_it_is_on_disk(tmp_path: Path) -> None:
    """An uncommitted edit is part of the candidate: the snapshot's tree differs from HEAD's
    exactly where the working tree does."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gate as driver  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    probe = ROOT / "bench" / f".gate-probe-{os.getpid()}"
    before = driver.snapshot()
    probe.write_text("x")
    try:
        after = driver.snapshot()
    finally:
        probe.unlink()
    assert before != after
    assert driver.git("rev-parse", f"{after}:bench/{probe.name}")
    assert driver.snapshot() == before


# ---- `acgs bench`: the peer ratios, a report ------------------------------------------------------


def test_acgs_bench_prints_the_table_and_writes_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from acgs.benchcli import bench
    from acgs.perf.results import Results

    # Outside a checkout `opa bench` has no Rego sources: that pair is reported skipped, with why.
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(bench, ["--workload", "example", "--rounds", "1", "--batch-seconds", "0.01",
                                     "--no-progress", "--json", str(tmp_path / "quick.json")])
    assert out.exit_code == 0, out.output
    assert "| example/opa-py-wasm | cpu |" in out.output
    assert "| example/opa bench | cpu | | | skipped: the Rego sources are not here" in out.output
    res = Results.read(tmp_path / "quick.json")
    assert res.suite == "quick" and res.run["cores"] and res.run["date"]
    assert [(r.benchmark, r.subject, r.role) for r in res.records] == [
        ("example/opa-py-wasm", "acgs", "acgs"), ("example/opa-py-wasm", "opa-py-wasm", "peer"),
    ]


def test_a_pair_keeps_the_median_round() -> None:
    pair = quick.Pair(quick.workloads()[0], quick.PEER_WASM)
    pair.acgs_ns = [10.0, 10.0, 40.0, 10.0, 10.0]  # one round spoilt by load on ACGS's side
    pair.peer_ns = [100.0, 120.0, 100.0, 90.0, 100.0]
    assert pair.ratios == [10.0, 12.0, 2.5, 9.0, 10.0]
    assert pair.ratio == 10.0
    # The figures reported for each side are the median round's own, so they divide to the ratio.
    i = pair.median_round
    assert i is not None and pair.peer_ns[i] / pair.acgs_ns[i] == pair.ratio


def test_the_slowdown_makes_each_measured_call_several_real_calls() -> None:
    calls: list[int] = []
    slowed = quick._slowed(lambda: calls.append(1), 3)
    slowed()
    assert len(calls) == 3
    assert quick._slowed(print, 1) is print


def test_the_advantage_is_oriented_so_that_above_one_favours_acgs() -> None:
    from acgs.perf.results import Results, comparisons

    res = Results("t", {})
    res.add("latency", "acgs", "time", 10, "ns")
    res.add("latency", "peer", "time", 30, "ns", role="peer")
    res.add("rate", "acgs, 1 worker", "req/s", 50, "req/s", better="higher")
    res.add("rate", "acgs", "req/s", 100, "req/s", better="higher")
    res.add("rate", "OPA server", "req/s", 40, "req/s", role="peer", better="higher")
    res.add("rate", "bare", "req/s", 1000, "req/s", role="baseline", better="higher")
    got = {(ours.benchmark, ours.subject, peer.subject): adv for _, ours, peer, adv in comparisons([res])}
    assert got == {("latency", "acgs", "peer"): 3.0, ("rate", "acgs", "OPA server"): 2.5}
