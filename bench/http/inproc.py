#!/usr/bin/env python3
"""The policy service's own CPU per decision request, without the network: the ASGI app built
as ``python -m acgs.services.policy`` builds it (constitution bundle, cache on, environment
settings), called directly with an HTTP scope for ``POST /v1/data/acgs/main/decision`` and a
body that differs on every request (the same body bench/http/run.py's vary workload sends).

What this leaves out is the server (uvicorn's parsing and ASGI cycle, the event loop, the
socket system calls); what it measures is everything ACGS's code does per request, with far
less noise than a load test on a shared machine (CPU time of one thread, no client beside it).

Usage: python bench/http/inproc.py [--requests N] [--rounds R] [--profile] [--ab DIR]
``--profile``: cProfile of one round, the top functions by own time.
``--ab DIR``: run this in a subprocess with PYTHONPATH=DIR too (another version of the acgs
package) and report both, rounds interleaved.
``--engine``: only the engine's part of an L1 miss, the two ways the service has called it:
``decide_cached_json`` then ``decide_json`` (before), ``decide_json`` alone (after), rounds
alternating. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLE = ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz"
PATH = "/v1/data/acgs/main/decision"


def _app() -> Any:
    os.environ.setdefault("ACGS_POLICY_BUNDLE", str(BUNDLE))
    os.environ.setdefault("ACGS_LOG_LEVEL", "warning")
    from acgs.services.policy.app import app_from_env

    return app_from_env()


def _bodies(n: int, nonce: str) -> list[bytes]:
    import acgs

    template = json.dumps({"input": {**acgs.SEED_REQUEST, "action": "data.analyze_private"}}, separators=(",", ":"))
    template = template.replace('"sess_123456"', '"sess_%s"')
    return [(template % f"{nonce}-{i}").encode() for i in range(n)]


async def _drive(app: Any, bodies: list[bytes]) -> float:
    """CPU seconds for all ``bodies``, one request after the other; checks each answer."""
    statuses: list[int] = []
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
        else:
            chunks.append(message.get("body", b""))

    started = time.process_time()
    for body in bodies:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8004),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "root_path": "",
            "method": "POST",
            "path": PATH,
            "raw_path": PATH.encode(),
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1:8004"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "state": {},
        }
        message = {"type": "http.request", "body": body, "more_body": False}

        async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
            return message

        await app(scope, receive, send)
    elapsed = time.process_time() - started
    if set(statuses) != {200} or b'"result"' not in chunks[-1]:
        raise SystemExit(f"unexpected answer: {statuses[-1]} {chunks[-1][:300]!r}")
    return elapsed


def _child(requests: int, rounds: int, profile: bool) -> list[float]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = _app()
    out: list[float] = []

    async def main() -> None:
        await _drive(app, _bodies(2000, "warm"))
        for r in range(rounds):
            bodies = _bodies(requests, f"r{r}-{os.getpid()}")
            if profile and r == rounds - 1:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
                await _drive(app, bodies)
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(35)
            else:
                out.append(await _drive(app, bodies) / requests * 1e6)

    asyncio.run(main())
    return out


def engine_calls(requests: int, rounds: int) -> None:
    import acgs

    engine = acgs.Engine.load(BUNDLE, cache_size=10_000)
    bodies = [body.removeprefix(b'{"input":')[:-1] for body in _bodies(requests * rounds * 2, "engine")]
    it = iter(bodies)
    out: dict[str, list[float]] = {"two calls": [], "one call": []}
    for _ in range(rounds):
        for name in out:
            batch = [next(it) for _ in range(requests)]
            misses = engine.cache_stats()["misses"]
            started = time.process_time()
            if name == "two calls":
                for raw in batch:
                    if engine.decide_cached_json(raw) is None:
                        engine.decide_json(raw)
            else:
                for raw in batch:
                    engine.decide_json(raw)
            out[name].append((time.process_time() - started) / requests * 1e6)
            counted = engine.cache_stats()["misses"] - misses
            print(f"{name}: {out[name][-1]:.1f} µs per decision, {counted / requests:.0f} L1 misses counted per miss", flush=True)
    two, one = statistics.median(out["two calls"]), statistics.median(out["one call"])
    print(f"median: two calls {two:.1f} µs, one call {one:.1f} µs ({one / two:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--ab", type=Path, help="python directory of the version to compare with")
    ap.add_argument("--engine", action="store_true", help="the engine calls of an L1 miss only")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        engine_calls(args.requests, args.rounds)
        return
    if args.child or not args.ab:
        per = _child(args.requests, args.rounds, args.profile)
        if args.child:
            print("RESULT " + json.dumps(per))
        else:
            print("µs CPU per request, by round: " + ", ".join(f"{x:.1f}" for x in per))
            if per:
                print(f"median {statistics.median(per):.1f} µs")
        return
    results: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for name, path in (("before", str(args.ab)), ("after", str(ROOT / "python"))):
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--rounds", "1", "--requests", str(args.requests)],
                env={**os.environ, "PYTHONPATH": path},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            value = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))[0]
            results[name].append(value)
            print(f"{name:6} {value:6.1f} µs  load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)
    b, a = statistics.median(results["before"]), statistics.median(results["after"])
    print(f"median before {b:.1f} µs, after {a:.1f} µs: {a / b:.2f}x CPU per request ({b / a:.2f}x requests per CPU second)")


if __name__ == "__main__":
    main()
