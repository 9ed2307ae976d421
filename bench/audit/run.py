"""Audit log benchmark (a measurement, not a test): durable appends per second with group
commit on SQLite (WAL, synchronous=FULL) and PostgreSQL (fsync and synchronous_commit on, a
throwaway server started here), and verification speed (events re-hashed per second, from the
store and in memory).

    .venv/bin/python bench/audit/run.py [--events 50000] [--writers 256] [--skip-postgres]

The tables are printed; the figures also go to bench/results/audit.json (the benchmarks' JSON
schema, ``--json`` elsewhere).

Appends are made through ``AuditLog.append`` as the service makes them: each call prepares
(validates, stamps, canonicalises) its events and awaits the durable commit of its group.
``--writers`` coroutines append concurrently, one event per call (``single``) or ``--batch``
events per call (``batched``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "python"), str(ROOT)]

from acgs import _acgs as core  # noqa: E402
from acgs.audit import AuditLog, open_store  # noqa: E402
from acgs.audit.events import GENESIS  # noqa: E402
from acgs.perf.results import Results, run_metadata  # noqa: E402

PRIVATE_KEY, _ = core.generate_signing_key("bench.acgs/audit")


def _event(i: int) -> dict[str, Any]:
    return {
        "event_type": "policy_decision",
        "agent_id": f"agent-{i % 97}",
        "action": "data.read_public",
        "result": "allow",
        "metadata": {"seq": i, "bundle_digest": "sha256:" + "ab" * 32, "input_sha256": "cd" * 32, "score": 0.96},
        "decision_id": f"{i:08x}-0000-4000-8000-000000000000",
        "constitutional_hash": "cdd01ef066bc6cf2",
    }


async def _appends(url: str, events: int, writers: int, per_call: int) -> tuple[float, int, float]:
    """(appends/s, commits, seconds)."""
    log = AuditLog(open_store(url), PRIVATE_KEY)
    await log.open()
    counter = iter(range(events))
    stop = object()

    async def writer() -> None:
        while True:
            batch = []
            for _ in range(per_call):
                i = next(counter, stop)
                if i is stop:
                    break
                batch.append(_event(i))  # type: ignore[arg-type]
            if not batch:
                return
            await log.append(batch)

    began = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    seconds = time.perf_counter() - began
    commits = int(getattr(log.store, "commits", 0))
    await log.close()
    return events / seconds, commits, seconds


async def _verify(url: str) -> tuple[int, float]:
    log = AuditLog(open_store(url), PRIVATE_KEY)
    await log.open()
    try:
        report = await log.verify()
        assert report.ok, report.as_dict()
        return report.checked, report.seconds
    finally:
        await log.close()


def _verify_in_memory(n: int) -> float:
    payloads = [core.canonical_json(dict(_event(i), event_id=f"evt_{i:032x}", timestamp="2026-11-25T00:00:00.000000Z")) for i in range(n)]
    contents, chains = [], []
    prev = GENESIS
    for p in payloads:
        c, prev = core.event_hashes(prev, p)
        contents.append(c)
        chains.append(prev)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        report = core.verify_chain(GENESIS, payloads, contents, chains, 0)
        best = min(best, time.perf_counter() - began)
        assert report.ok
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--writers", type=int, default=256)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--dir", type=Path, help="where the SQLite file goes (default: a temporary directory on disk)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "audit.json")
    args = ap.parse_args()

    rows: list[tuple[str, str, float, int, float]] = []
    work = Path(tempfile.mkdtemp(prefix="acgs-audit-bench-", dir=args.dir))
    try:
        for mode, writers, per_call in (("single", args.writers, 1), ("batched", max(1, args.writers // 16), args.batch)):
            url = f"sqlite:///{work / f'{mode}.sqlite3'}"
            rate, commits, seconds = asyncio.run(_appends(url, args.events, writers, per_call))
            rows.append(("SQLite", mode, rate, commits, seconds))
            print(f"SQLite {mode}: {rate:,.0f} appends/s ({args.events / max(commits, 1):.0f} events/commit)", flush=True)
        checked, vsec = asyncio.run(_verify(f"sqlite:///{work / 'single.sqlite3'}"))
        print(f"SQLite verify: {checked / vsec:,.0f} events/s ({checked} events)", flush=True)
        verify_rows = [("SQLite store, AuditLog.verify", checked / vsec)]
        if not args.skip_postgres:
            from tests.services.pg import PostgresServer, _binaries

            bindir = _binaries()
            if bindir is None:
                print("PostgreSQL binaries not found; skipping", file=sys.stderr)
            else:
                server = PostgresServer(bindir, durable=True)
                server.start()
                try:
                    for mode, writers, per_call in (("single", args.writers, 1), ("batched", max(1, args.writers // 16), args.batch)):
                        url = server.create_database()
                        rate, commits, seconds = asyncio.run(_appends(url, args.events, writers, per_call))
                        rows.append(("PostgreSQL", mode, rate, commits, seconds))
                        print(f"PostgreSQL {mode}: {rate:,.0f} appends/s ({args.events / max(commits, 1):.0f} events/commit)", flush=True)
                        if mode == "single":
                            checked, vsec = asyncio.run(_verify(url))
                            verify_rows.append(("PostgreSQL store, AuditLog.verify", checked / vsec))
                            print(f"PostgreSQL verify: {checked / vsec:,.0f} events/s", flush=True)
                finally:
                    server.stop()
        mem = _verify_in_memory(200_000)
        verify_rows.append(("in memory, verify_chain (Rust, 200k events)", mem))
        print(f"in-memory verify_chain: {mem:,.0f} events/s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {args.events} events of ~{len(core.canonical_json(_event(0))) + 90} bytes")
    print()
    print("| store | appends | durable appends/s | events per commit |")
    print("| --- | --- | ---: | ---: |")
    for store, mode, rate, commits, _s in rows:
        label = f"1 event per call, {args.writers} writers" if mode == "single" else f"{args.batch} per call, {max(1, args.writers // 16)} writers"
        print(f"| {store} | {label} | {rate:,.0f} | {args.events / max(commits, 1):.0f} |")
    print()
    print("| verification | events/s |")
    print("| --- | ---: |")
    for what, rate in verify_rows:
        print(f"| {what} | {rate:,.0f} |")

    res = Results("audit", {**run_metadata(ROOT), "events": args.events, "writers": args.writers, "batch": args.batch})
    for store, mode, rate, commits, _s in rows:
        label = f"1 event per call, {args.writers} writers" if mode == "single" else f"{args.batch} per call, {max(1, args.writers // 16)} writers"
        res.add(f"audit append, {store}, {label}", "acgs", "durable appends per second", rate, "events/s", better="higher")
        res.add(f"audit append, {store}, {label}", "acgs", "events per commit", args.events / max(commits, 1), "events", better="higher")
    for what, rate in verify_rows:
        res.add(f"audit verification, {what}", "acgs", "events verified per second", rate, "events/s", better="higher")
    res.write(args.json)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
