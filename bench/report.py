#!/usr/bin/env python3
"""Reads every bench/results/*.json (the schema of acgs.perf.results), prints the table of ACGS
against its peers, draws the chart bench/results/chart.png (matplotlib) and, with --readme,
puts the table into the README's Performance section.

    python bench/report.py [--readme] [--all]

`make bench` runs it last. --all prints every record, ACGS-only benchmarks included.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "python"))

from acgs.perf.results import Record, Results, comparison_table, comparisons, markdown_table  # noqa: E402

# Suites in the order the table and chart show them.
ORDER = ["quick", "hosts", "http", "http-constitution", "audit", "sandbox"]
START, END = "<!-- bench:table -->", "<!-- /bench:table -->"
PEER_COLOURS = {"opa bench": "#1f77b4", "OPA server": "#2ca02c", "rust-opa-wasm": "#ff7f0e", "opa-py-wasm": "#9467bd"}


def load(directory: Path) -> list[Results]:
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(Results.read(path))
        except (ValueError, KeyError) as exc:
            print(f"skipping {path.name}: {exc}", file=sys.stderr)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda r: (rank.get(r.suite, len(ORDER)), r.suite))


def provenance(results: list[Results]) -> str:
    parts = []
    for r in results:
        run = r.run
        parts.append(f"{r.suite}: {run.get('date', '?')[:10]}, commit {run.get('commit', '?')}, {run.get('cores', '?')} cores"
                     + (" (quick run)" if run.get("quick") else ""))
    return "; ".join(parts)


def label(suite: str, ours: Record, peer: Record) -> str:
    if suite == "quick":
        return f"quick suite: {ours.benchmark.split('/')[0]} policy, vs {peer.subject}"
    metric = f", {ours.metric}" if suite.startswith("http") else ""
    return f"{ours.benchmark}{metric}, vs {peer.subject}"


def chart(results: list[Results], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = comparisons(results)
    if not rows:
        raise SystemExit("no ACGS-versus-peer results in bench/results/*.json: run `make bench` first")
    labels = [label(suite, ours, peer) for suite, ours, peer, _ in rows]
    values = [adv for *_, adv in rows]
    colours = [PEER_COLOURS.get(peer.subject, "#7f7f7f") for _, _, peer, _ in rows]
    fig, ax = plt.subplots(figsize=(11, 0.34 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, values, color=colours)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    for yi, v in zip(y, values):
        ax.text(v * 1.05, yi, f"{v:.2f}×", va="center", fontsize=7)
    ax.set_xlim(min(0.5, min(values) / 1.5), max(values) * 3)
    ax.set_xlabel("ACGS advantage over the peer (×, log scale; right of the line: ACGS faster)")
    ax.set_title("ACGS against its peers: same policies, same inputs, same machine", fontsize=11)
    present = [p for p in PEER_COLOURS if any(peer.subject == p for _, _, peer, _ in rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=PEER_COLOURS[p]) for p in present]
    ax.legend(handles, present, loc="lower right", fontsize=8)
    footer = textwrap.fill("Runs: " + provenance(results), 200)
    fig.text(0.01, 0.005, footer, fontsize=6, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.015 * (footer.count("\n") + 2), 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def update_readme(table: str, results: list[Results]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block in its Performance section")
    block = f"{START}\n{table}\n\nRuns: {provenance(results)}.\n{END}"
    readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readme", action="store_true", help="put the table into README.md's Performance section")
    ap.add_argument("--all", action="store_true", help="print every record, not only the comparisons")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the *.json results are")
    ap.add_argument("--chart", type=Path, default=RESULTS / "chart.png")
    args = ap.parse_args()
    results = load(args.results)
    table = comparison_table(results)
    print(markdown_table(results) if args.all else table)
    chart(results, args.chart)
    print(f"\nwrote {args.chart.relative_to(ROOT) if args.chart.is_relative_to(ROOT) else args.chart}")
    if args.readme:
        update_readme(table, results)
        print("updated the table in README.md")


if __name__ == "__main__":
    main()
