"""`acgs bench`: the quick benchmark suite (ACGS next to opa-py-wasm and `opa bench` on the
shipped bundles, as ratios) with a progress bar and a table. A report, not a pass/fail rule:
ratios between two engines move with the CPU, so the CI gate (bench/gate.py) compares two
builds of ACGS instead."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from acgs.perf import quick
from acgs.perf.results import format_value, run_metadata


def _table(pairs: list[quick.Pair]) -> str:
    lines = [
        "| pair | clock | ACGS per evaluation | peer per evaluation | ratio (peer / ACGS) | all rounds: lowest–highest ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for p in pairs:
        if p.ratio is None:
            lines.append(f"| {p.name} | {p.clock} | | | skipped: {p.skipped or 'not measured'} | |")
            continue
        r, i = p.ratios, p.median_round
        assert i is not None  # a ratio implies a median round
        lines.append(
            f"| {p.name} | {p.clock} | {format_value(p.acgs_ns[i], 'ns')} | {format_value(p.peer_ns[i], 'ns')} | "
            f"{p.ratio:.2f}× | {min(r):.2f}–{max(r):.2f} |"
        )
    return "\n".join(lines)


def _pair_name(item: object) -> str | None:
    return item.name if isinstance(item, quick.Pair) else None


def _checkout(path: Path) -> Path | None:
    """The git checkout a path lies in, for the run's commit."""
    for parent in [path.resolve(), *path.resolve().parents]:
        if (parent / ".git").exists():
            return parent
    return None


@click.command("bench")
@click.option("--rounds", type=click.IntRange(1), default=7, show_default=True,
              help="Interleaved rounds per pair; the median round's ratio is kept.")
@click.option("--batch-seconds", type=click.FloatRange(0.001), default=0.25, show_default=True,
              help="Length of each in-process batch of calls (opa bench picks its own, about 1 s).")
@click.option("--peer", "peers", type=click.Choice(quick.PEERS), multiple=True,
              help="Peers to measure against (repeatable; default: all).")
@click.option("--workload", "names", type=click.Choice([w.name for w in quick.workloads()]), multiple=True,
              help="Bundles to measure on (repeatable; default: all).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results in the benchmark JSON schema to this file.")
@click.option("--opa", type=click.Path(dir_okay=False), envvar="OPA", default=None,
              help="The OPA CLI for the `opa bench` peer [default: $OPA, `opa` on PATH, ~/.local/bin/opa].")
@click.option("--checkout", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A clone of the ACGS repository, whose policies/ `opa bench` evaluates [default: the one the current directory is in].")
@click.option("--slowdown", type=click.IntRange(1), envvar="ACGS_BENCH_SLOWDOWN", default=1, show_default=True,
              help="Make each measured ACGS call N calls (to see the ratios fall).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
def bench(rounds: int, batch_seconds: float, peers: tuple[str, ...], names: tuple[str, ...],
          json_out: Path | None, opa: str | None, checkout: Path | None, slowdown: int, progress: bool) -> None:
    """Run the quick benchmark suite: ACGS against peers on the same bundles and inputs.

    Each pair's figure is a ratio, peer time / ACGS time (above 1: ACGS is faster), measured in
    interleaved rounds so that load from other processes falls on both sides alike. The full
    suite (criterion, HTTP load against OPA's server, audit, sandbox, the chart) runs from a
    checkout of the repository: `make bench`. The ratios are a report: they move with the CPU,
    so regressions are judged by comparing two builds of ACGS (`make bench-gate`).
    """
    checkout = checkout or _checkout(Path.cwd())
    pairs = quick.plan(peers or quick.PEERS, names or None, opa=opa, slowdown=slowdown, checkout=checkout)
    active = [p for p in pairs if p.skipped is None]
    if progress:
        bar: Any
        with click.progressbar(length=rounds * len(active), label="acgs bench", file=sys.stderr,
                               item_show_func=_pair_name) as bar:
            quick.measure(active, rounds, batch_seconds, lambda p: bar.update(1, p))
    else:
        quick.measure(active, rounds, batch_seconds)
    click.echo(_table(pairs))
    if slowdown > 1:
        click.echo(f"(ACGS deliberately slowed: each measured call made {slowdown} calls)")
    results = quick.to_results(pairs, {**run_metadata(checkout), "rounds": rounds,
                                       "batch_seconds": batch_seconds, "slowdown": slowdown})
    if json_out is not None:
        results.write(json_out)
        click.echo(f"wrote {json_out}")
