"""The performance gate's verdicts: a candidate build of ACGS against a base build, both measured
in the same run on the same machine and inputs (bench/gate.py drives them).

Each benchmark gives one ratio per round, candidate time / base time (above 1: the candidate is
slower), the two sides timed back to back in alternating order. The noise band is the
distribution-free confidence interval of the median ratio (order statistics of the rounds, no
assumption about the shape of the noise), so a busy machine widens the band instead of failing
the gate, and a quiet one narrows it. A benchmark fails when the whole band lies above
``1 + tolerance``: the candidate is slower beyond what the rounds themselves can explain.

Instruction counts, where valgrind measured them, are a second signal that load does not move:
a benchmark also fails when the candidate executes more than ``1 + instruction_tolerance`` times
the base's instructions per call.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

DEFAULT_TOLERANCE = 0.05
DEFAULT_INSTRUCTION_TOLERANCE = 0.03
DEFAULT_CONFIDENCE = 0.95


def median_band(values: list[float], confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of ``values``: the k-th smallest
    and k-th largest value, for the largest k whose binomial tail leaves ``confidence`` between
    them. With too few values for that confidence it is their whole range."""
    if not values:
        raise ValueError("no values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    xs = sorted(values)
    n = len(xs)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0  # below: P(Binomial(n, 1/2) <= k - 1)
    while k < n // 2:
        nxt = below + math.comb(n, k) / 2**n
        if nxt > tail:
            break
        below, k = nxt, k + 1
    if k == 0:
        return xs[0], xs[-1]
    return xs[k - 1], xs[n - k]


@dataclass
class Comparison:
    """One benchmark: the base's and the candidate's time per call in each round (ns), and their
    instructions per call when counted."""

    name: str
    base_ns: list[float] = field(default_factory=list)
    candidate_ns: list[float] = field(default_factory=list)
    base_instructions: float | None = None
    candidate_instructions: float | None = None

    @property
    def ratios(self) -> list[float]:
        return [c / max(b, 1e-9) for b, c in zip(self.base_ns, self.candidate_ns, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def band(self, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
        return median_band(self.ratios, confidence)

    @property
    def instruction_ratio(self) -> float | None:
        if self.base_instructions is None or self.candidate_instructions is None or self.base_instructions <= 0:
            return None
        return self.candidate_instructions / self.base_instructions


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    tolerance: float = DEFAULT_TOLERANCE
    instruction_tolerance: float = DEFAULT_INSTRUCTION_TOLERANCE
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def slower_in_time(self) -> bool:
        lo, _ = self.comparison.band(self.confidence)
        return lo > 1 + self.tolerance

    @property
    def unsettled(self) -> bool:
        """The median says slower but the band does not rule out noise: worth more rounds."""
        return not self.slower_in_time and self.comparison.ratio > 1 + self.tolerance

    @property
    def more_instructions(self) -> bool:
        r = self.comparison.instruction_ratio
        return r is not None and r > 1 + self.instruction_tolerance

    @property
    def ok(self) -> bool:
        return not (self.slower_in_time or self.more_instructions)

    def message(self) -> str:
        c = self.comparison
        lo, hi = c.band(self.confidence)
        text = (f"{c.name}: candidate/base time {c.ratio:.3f} over {len(c.ratios)} rounds "
                f"({self.confidence:.0%} band {lo:.3f}-{hi:.3f}; fails above {1 + self.tolerance:.3f})")
        r = c.instruction_ratio
        if r is not None:
            text += (f"; instructions per call {c.base_instructions:,.0f} -> {c.candidate_instructions:,.0f} "
                     f"({r - 1:+.2%}; fails above {self.instruction_tolerance:+.0%})")
        if self.slower_in_time:
            text += ": SLOWER beyond the noise band"
        if self.more_instructions:
            text += ": MORE INSTRUCTIONS beyond the tolerance"
        return text

