"""`acgs bench`: the quick benchmark suite (ACGS next to opa-py-wasm and `opa bench` on the
shipped bundles, as ratios) with a progress bar and a table; ``--gate`` holds the ratios to the
reference ratios and exits non-zero on a drop of more than 20%."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from acgs.perf import gate, quick
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


def _verdicts(pairs: list[quick.Pair], reference: dict[str, float], max_drop: float) -> list[gate.Verdict]:
    return gate.compare(quick.ratios(pairs), reference, max_drop,
                        {p.name: p.skipped or "" for p in pairs if p.ratio is None})


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
@click.option("--gate/--no-gate", "run_gate", default=False, show_default=True,
              help="Compare the ratios with the reference ratios; exit 1 when one drops by more than the allowed share.")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench/reference.json"),
              show_default=True, help="Reference ratios for --gate and --update.")
@click.option("--update", is_flag=True, help="Write this run's ratios to --reference (refreshes the gate's reference).")
@click.option("--max-drop", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Allowed drop of a ratio, as a fraction [default: the reference's, 0.2].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results in the benchmark JSON schema to this file.")
@click.option("--opa", type=click.Path(dir_okay=False), envvar="OPA", default=None,
              help="The OPA CLI for the `opa bench` peer [default: $OPA, `opa` on PATH, ~/.local/bin/opa].")
@click.option("--checkout", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="A clone of the ACGS repository, whose policies/ `opa bench` evaluates [default: the one the current directory is in].")
@click.option("--slowdown", type=click.IntRange(1), envvar="ACGS_BENCH_SLOWDOWN", default=1, show_default=True,
              help="Make each measured ACGS call N calls (for testing that the gate catches a slower ACGS).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
def bench(rounds: int, batch_seconds: float, peers: tuple[str, ...], names: tuple[str, ...], run_gate: bool,
          reference: Path, update: bool, max_drop: float | None, json_out: Path | None, opa: str | None,
          checkout: Path | None, slowdown: int, progress: bool) -> None:
    """Run the quick benchmark suite: ACGS against peers on the same bundles and inputs.

    Each pair's figure is a ratio, peer time / ACGS time (above 1: ACGS is faster), measured in
    interleaved rounds so that load from other processes falls on both sides alike. The full
    suite (criterion, HTTP load against OPA's server, audit, sandbox, the chart) runs from a
    checkout of the repository: `make bench`.
    """
    if update and slowdown > 1:
        raise click.UsageError("--update with --slowdown would record a deliberately slowed ACGS")
    ref: gate.Reference | None = None
    if run_gate:
        try:
            ref = gate.Reference.read(reference)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise click.ClickException(str(exc)) from exc
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
    verdicts: list[gate.Verdict] = []
    if ref is not None:
        allowed = ref.max_drop if max_drop is None else max_drop
        # Only the pairs this run was asked for are held to their reference.
        wanted = {p.name for p in pairs}
        expected = {k: v for k, v in ref.ratios.items() if k in wanted or not (peers or names)}
        verdicts = _verdicts(pairs, expected, allowed)
        suspects = [p for p in pairs if p.skipped is None and p.name in {v.benchmark for v in verdicts if not v.ok}]
        if suspects:
            # A burst of load can spoil most rounds of one pair; a real regression survives a
            # second set of rounds, whose figures are pooled with the first.
            click.echo(f"re-measuring {', '.join(p.name for p in suspects)} before failing", err=True)
            quick.measure(suspects, rounds, batch_seconds)
            verdicts = _verdicts(pairs, expected, allowed)

    click.echo(_table(pairs))
    if slowdown > 1:
        click.echo(f"(ACGS deliberately slowed: each measured call made {slowdown} calls)")
    results = quick.to_results(pairs, {**run_metadata(checkout), "rounds": rounds,
                                       "batch_seconds": batch_seconds, "slowdown": slowdown})
    if json_out is not None:
        results.write(json_out)
        click.echo(f"wrote {json_out}")
    failed = False
    if ref is not None:
        click.echo("")
        for v in verdicts:
            click.echo(("ok    " if v.ok else "FAIL  ") + v.message())
        failed = not all(v.ok for v in verdicts)
        click.echo("gate: " + ("FAILED" if failed else "passed"))
    if update:
        missing = [p.name for p in pairs if p.ratio is None]
        if missing:
            raise click.ClickException(f"not updating {reference}: not measured: {', '.join(missing)}")
        old = gate.Reference.read(reference) if reference.exists() else gate.Reference({})
        # A run limited to some pairs refreshes those and keeps the others' reference.
        kept = old.ratios if (peers or names) else {}
        gate.Reference({**kept, **quick.ratios(pairs)}, old.max_drop if max_drop is None else max_drop,
                       results.run).write(reference)
        click.echo(f"wrote reference ratios to {reference}")
    if failed:
        sys.exit(1)
