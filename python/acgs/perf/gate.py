"""The regression gate: measured ratios (peer time / ACGS time) against reference ratios, failing
when one drops by more than the allowed share (20% by default).

A drop is ``1 - measured / reference``: ACGS getting slower relative to its peer lowers the
ratio. Improvements (a negative drop) always pass. Every reference ratio must be measured, and
every measured ratio must have a reference, so that a peer silently missing from a run, or a
new pair nobody recorded, fails the gate instead of passing it unseen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_DROP = 0.20
SCHEMA = "acgs-bench-reference/1"


@dataclass(frozen=True)
class Verdict:
    benchmark: str
    reference: float | None
    measured: float | None
    max_drop: float
    missing: str | None = None  # why a referenced pair was not measured

    @property
    def drop(self) -> float | None:
        if self.reference is None or self.measured is None or self.reference <= 0:
            return None
        return 1.0 - self.measured / self.reference

    @property
    def ok(self) -> bool:
        drop = self.drop
        return drop is not None and drop <= self.max_drop

    def message(self) -> str:
        if self.reference is None:
            return (f"{self.benchmark}: measured ratio {self.measured:.3f} has no reference ratio "
                    "(refresh the reference: `make bench-reference`)")
        if self.measured is None:
            why = f": {self.missing}" if self.missing else ""
            return f"{self.benchmark}: not measured{why} (reference ratio {self.reference:.3f})"
        drop = self.drop
        assert drop is not None  # both ratios are known here
        change = f"a drop of {drop:.1%}" if drop > 0 else f"an improvement of {-drop:.1%}"
        verdict = f"{'within' if self.ok else 'more than'} the allowed {self.max_drop:.0%}"
        return (f"{self.benchmark}: reference ratio {self.reference:.3f}, measured {self.measured:.3f}, "
                f"{change}: {verdict}")


def compare(
    measured: Mapping[str, float],
    reference: Mapping[str, float],
    max_drop: float = DEFAULT_MAX_DROP,
    missing: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """One verdict per benchmark named in either mapping, in reference order."""
    if not 0 <= max_drop < 1:
        raise ValueError(f"max_drop must be in [0, 1), got {max_drop}")
    names = list(reference) + [n for n in measured if n not in reference]
    why = missing or {}
    return [Verdict(n, reference.get(n), measured.get(n), max_drop, why.get(n)) for n in names]


@dataclass
class Reference:
    """bench/reference.json: the ratios a run is held to, and the run they came from."""

    ratios: dict[str, float]
    max_drop: float = DEFAULT_MAX_DROP
    run: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Reference:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no reference ratios at {path} (create them with --update)") from None
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not an {SCHEMA} document")
        ratios = {str(k): float(v) for k, v in doc["ratios"].items()}
        if any(v <= 0 for v in ratios.values()):
            raise ValueError(f"{path}: reference ratios must be positive")
        return cls(ratios, float(doc.get("max_drop", DEFAULT_MAX_DROP)), dict(doc.get("run", {})))

    def write(self, path: Path) -> None:
        doc = {
            "schema": SCHEMA,
            "about": "peer time / ACGS time per pair of the quick suite (acgs bench); the gate fails "
                     "when a measured ratio is more than max_drop below its reference",
            "max_drop": self.max_drop,
            "ratios": {k: round(v, 4) for k, v in sorted(self.ratios.items())},
            "run": self.run,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
