"""Performance measurement shipped with the package: the quick suite that `acgs bench` runs
(ACGS next to a peer on the same bundle and input, as ratios: a report), the verdicts of the CI
gate that compares a candidate build with a base build (bench/gate.py), and the one JSON schema
every benchmark of the project writes."""

from acgs.perf.gate import Comparison, Verdict, median_band
from acgs.perf.quick import PEERS, Pair, Workload, measure, plan
from acgs.perf.results import Record, Results, run_metadata

__all__ = [
    "PEERS",
    "Comparison",
    "Pair",
    "Record",
    "Results",
    "Verdict",
    "Workload",
    "measure",
    "median_band",
    "plan",
    "run_metadata",
]
