"""Performance measurement shipped with the package: the quick suite that `acgs bench` and the
CI gate run (ACGS next to a peer on the same bundle and input, as ratios), the regression check
against reference ratios, and the one JSON schema every benchmark of the project writes."""

from acgs.perf.gate import Reference, Verdict, compare
from acgs.perf.quick import PEERS, Pair, Workload, measure, plan
from acgs.perf.results import Record, Results, run_metadata

__all__ = [
    "PEERS",
    "Pair",
    "Record",
    "Reference",
    "Results",
    "Verdict",
    "Workload",
    "compare",
    "measure",
    "plan",
    "run_metadata",
]
