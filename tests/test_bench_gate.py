"""The performance gate (bench/gate.py, `acgs bench --gate`): the comparison of measured ratios
with reference ratios, and the gate itself run for real on the quick suite's in-process pair
(ACGS against opa-py-wasm on the shipped bundles), passing on the normal build and failing when
the harness makes every measured ACGS call three calls (ACGS_BENCH_SLOWDOWN=3).

The gate runs with few, short rounds here so the file takes seconds; a threefold slowdown is a
drop of about 67%, far past the 20% allowed, so the failing case cannot pass by noise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from acgs.perf import gate, quick

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / "bench" / "gate.py"
# The in-process pair: both sides in this machine's CPU time, no subprocesses per round.
FAST = ["--peer", quick.PEER_WASM, "--rounds", "5", "--batch-seconds", "0.05", "--no-progress"]


# ---- the ratio and threshold logic -------------------------------------------------------------


def one(measured: float, reference: float = 10.0, max_drop: float = 0.20) -> gate.Verdict:
    (verdict,) = gate.compare({"w/peer": measured}, {"w/peer": reference}, max_drop)
    return verdict


def test_a_drop_of_19_percent_passes() -> None:
    v = one(8.1)
    assert v.ok
    assert v.drop == pytest.approx(0.19)


def test_a_drop_of_21_percent_fails() -> None:
    v = one(7.9)
    assert not v.ok
    assert v.drop == pytest.approx(0.21)
    text = v.message()
    for part in ("w/peer", "reference ratio 10.000", "measured 7.900", "a drop of 21.0%", "more than the allowed 20%"):
        assert part in text


def test_improvements_pass() -> None:
    v = one(25.0)
    assert v.ok
    assert v.drop == pytest.approx(-1.5)
    assert "an improvement of 150.0%" in v.message()


def test_the_allowed_drop_is_configurable() -> None:
    assert not one(9.4, max_drop=0.05).ok
    assert one(9.6, max_drop=0.05).ok
    with pytest.raises(ValueError):
        gate.compare({}, {}, max_drop=1.0)


def test_a_referenced_pair_that_was_not_measured_fails_with_the_reason() -> None:
    (v,) = gate.compare({}, {"w/opa bench": 6.0}, missing={"w/opa bench": "the OPA CLI was not found"})
    assert not v.ok
    assert "not measured: the OPA CLI was not found" in v.message()


def test_a_measured_pair_without_a_reference_fails() -> None:
    verdicts = gate.compare({"a/peer": 5.0, "b/peer": 3.0}, {"a/peer": 5.0})
    assert [v.benchmark for v in verdicts] == ["a/peer", "b/peer"]
    assert [v.ok for v in verdicts] == [True, False]
    assert "no reference ratio" in verdicts[1].message()


def test_reference_round_trip_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "reference.json"
    gate.Reference({"a/peer": 5.123456}, 0.15, {"commit": "abc"}).write(path)
    back = gate.Reference.read(path)
    assert back.ratios == {"a/peer": 5.1235}
    assert back.max_drop == 0.15
    path.write_text(json.dumps({"schema": "something else", "ratios": {}}))
    with pytest.raises(ValueError):
        gate.Reference.read(path)
    path.write_text(json.dumps({"schema": gate.SCHEMA, "ratios": {"a/peer": 0}}))
    with pytest.raises(ValueError):
        gate.Reference.read(path)
    with pytest.raises(FileNotFoundError):
        gate.Reference.read(tmp_path / "absent.json")


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


def test_the_committed_reference_covers_the_quick_suite() -> None:
    ref = gate.Reference.read(ROOT / "bench" / "reference.json")
    want = {f"{w.name}/{peer}" for w in quick.workloads() for peer in quick.PEERS}
    assert set(ref.ratios) == want
    assert ref.max_drop == gate.DEFAULT_MAX_DROP


# ---- the gate, run for real --------------------------------------------------------------------


def run_gate(*args: str, slowdown: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ACGS_BENCH_SLOWDOWN"}
    if slowdown is not None:
        env["ACGS_BENCH_SLOWDOWN"] = str(slowdown)
    return subprocess.run(
        [sys.executable, str(GATE), *FAST, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reference ratios recorded on this machine, by the gate's own --update."""
    path = tmp_path_factory.mktemp("gate") / "reference.json"
    out = run_gate("--update", "--reference", str(path), "--rounds", "9")  # a steadier reference
    assert out.returncode == 0, out.stdout + out.stderr
    ratios = gate.Reference.read(path).ratios
    assert set(ratios) == {f"{w.name}/{quick.PEER_WASM}" for w in quick.workloads()}
    return path


def test_the_gate_passes_on_the_normal_build(reference: Path) -> None:
    out = run_gate("--reference", str(reference))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gate: passed" in out.stdout
    assert "FAIL" not in out.stdout


def test_the_gate_fails_on_a_slowed_build(reference: Path) -> None:
    out = run_gate("--reference", str(reference), slowdown=3)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "gate: FAILED" in out.stdout
    expected = gate.Reference.read(reference).ratios
    for name, ratio in expected.items():
        line = next(x for x in out.stdout.splitlines() if x.startswith("FAIL") and f" {name}:" in x)
        m = re.search(r"reference ratio ([\d.]+), measured ([\d.]+), a drop of ([\d.]+)%", line)
        assert m is not None, line
        assert float(m.group(1)) == pytest.approx(ratio, abs=1e-3)
        # Three calls for one: the ratio falls to about a third of the reference.
        assert float(m.group(3)) > 40, line


# ---- `acgs bench` and the results schema --------------------------------------------------------


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
    # Under the gate a referenced pair that could not run fails it.
    gate.Reference({"example/opa bench": 6.0}).write(tmp_path / "ref.json")
    out = CliRunner().invoke(bench, ["--workload", "example", "--peer", "opa bench", "--no-progress", "--gate",
                                     "--reference", str(tmp_path / "ref.json")])
    assert out.exit_code == 1, out.output
    assert "FAIL  example/opa bench: not measured: the Rego sources are not here" in out.output


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
