"""The one schema of benchmark results (bench/results/*.json): per suite, the run's metadata
and a flat list of records (benchmark, subject, metric, value, unit), plus the table built
from them.

A record's ``role`` says whether its subject is ACGS, a peer (another system doing the same
work: OPA's server, ``opa bench``, another Wasm host) or a baseline that is not a product (a
bare process). Within one benchmark and metric the ACGS record named ``acgs`` is the one peers
are compared with; ``better`` says which direction wins, so the ratio is always oriented so
that above 1 means ACGS is faster.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA = "acgs-bench/1"

Role = Literal["acgs", "peer", "baseline"]
Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Record:
    benchmark: str
    subject: str
    metric: str
    value: float
    unit: str
    role: Role = "acgs"
    better: Better = "lower"


@dataclass
class Results:
    suite: str
    run: dict[str, Any]
    records: list[Record] = field(default_factory=list)

    def add(self, benchmark: str, subject: str, metric: str, value: float, unit: str, *,
            role: Role = "acgs", better: Better = "lower") -> None:
        self.records.append(Record(benchmark, subject, metric, float(value), unit, role, better))

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "suite": self.suite, "run": self.run, "records": [asdict(r) for r in self.records]}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Results:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not an {SCHEMA} document (schema: {doc.get('schema')!r})")
        records = [
            Record(
                str(r["benchmark"]), str(r["subject"]), str(r["metric"]), float(r["value"]), str(r["unit"]),
                r.get("role", "acgs"), r.get("better", "lower"),
            )
            for r in doc["records"]
        ]
        return cls(str(doc["suite"]), dict(doc["run"]), records)

    @classmethod
    def read(cls, path: Path) -> Results:
        return cls.from_json(json.loads(path.read_text()))


def _first_line(cmd: Sequence[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, check=False, cwd=cwd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    return text.splitlines()[0] if out.returncode == 0 and text else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(checkout: Path | None = None) -> dict[str, Any]:
    """Where and when a run happened: the commit (when run from a git checkout), the date, the
    machine's cores and load, and the versions that shape the figures."""
    from acgs import __version__

    commit = _first_line(["git", "rev-parse", "--short", "HEAD"], cwd=checkout) if checkout else None
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "commit": commit or "unknown",
        "acgs": __version__,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "load_average": load,
    }


#: The ACGS subject a peer is compared with, first found first: the plan evaluator (the
#: engine's default evaluator) where a suite measures it beside the Wasm, else "acgs".
PRIMARY_SUBJECTS = ("acgs-plan", "acgs")


def _primary(records: Iterable[Record]) -> Record | None:
    ours = [r for r in records if r.role == "acgs"]
    for subject in PRIMARY_SUBJECTS:
        found = next((r for r in ours if r.subject == subject), None)
        if found is not None:
            return found
    return ours[0] if ours else None


def advantage(ours: Record, peer: Record) -> float | None:
    """How many times faster ACGS is than the peer (above 1 favours ACGS)."""
    if ours.value <= 0 or peer.value <= 0:
        return None
    return peer.value / ours.value if ours.better == "lower" else ours.value / peer.value


def comparisons(results: Iterable[Results]) -> list[tuple[str, Record, Record, float]]:
    """(suite, ACGS record, peer record, ACGS advantage) for every peer record."""
    out: list[tuple[str, Record, Record, float]] = []
    for res in results:
        groups: dict[tuple[str, str], list[Record]] = {}
        for r in res.records:
            groups.setdefault((r.benchmark, r.metric), []).append(r)
        for recs in groups.values():
            ours = _primary(recs)
            if ours is None:
                continue
            for r in recs:
                adv = advantage(ours, r) if r.role == "peer" else None
                if adv is not None:
                    out.append((res.suite, ours, r, adv))
    return out


def format_value(value: float, unit: str) -> str:
    if unit == "ns":
        return f"{value / 1000:,.2f} µs" if value >= 1000 else f"{value:,.0f} ns"
    if unit == "x":
        return f"{value:.2f}×"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f} {unit}"


def markdown_table(results: Sequence[Results]) -> str:
    """Every record, with ACGS's advantage on each peer's row."""
    lines = [
        "| suite | benchmark | subject | metric | value | ACGS advantage |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    adv = {(suite, id(peer)): a for suite, _ours, peer, a in comparisons(results)}
    for res in results:
        for r in res.records:
            a = adv.get((res.suite, id(r)))
            label = r.subject if r.role != "acgs" else f"**{r.subject}**"
            lines.append(
                f"| {res.suite} | {r.benchmark} | {label} | {r.metric} | {format_value(r.value, r.unit)} | "
                f"{'' if a is None else f'{a:.2f}×'} |"
            )
    return "\n".join(lines)


def comparison_table(results: Sequence[Results]) -> str:
    """One row per ACGS-versus-peer comparison: the short table the README shows."""
    lines = [
        "| suite | benchmark | metric | ACGS | peer | peer's figure | ACGS advantage |",
        "| --- | --- | --- | ---: | --- | ---: | ---: |",
    ]
    for suite, ours, peer, a in comparisons(results):
        lines.append(
            f"| {suite} | {ours.benchmark} | {ours.metric} | {format_value(ours.value, ours.unit)} | {peer.subject} | "
            f"{format_value(peer.value, peer.unit)} | {a:.2f}× |"
        )
    return "\n".join(lines)
