#!/usr/bin/env python3
"""What authentication and rate limiting add to a decision on the policy service's hot path.

The policy app is called in process as an ASGI app (no sockets, no HTTP parsing), so the
difference between configurations is the gate's own cost: credential lookup, role check,
token bucket. Configurations:

  off         ACGS_AUTH off, no rate limit (no gate installed: the default)
  api-key     auth on, an API key (SHA-256 + dict lookup)
  jwt-hs256   auth on, an HS256 JWT (verified once, then remembered until it expires)
  jwt-rs256   auth on, an RS256 JWT (likewise)
  key+limit   auth on, an API key, in-process token bucket (limit high enough never to refuse)
  key+redis   the same with the bucket in Redis (one EVALSHA per request; needs redis-server)

Each configuration runs ``--rounds`` rounds of ``--requests`` decisions (the same input, so
the decision cache answers and the gate's share is as large as it gets), interleaved; the
median and the fastest round are reported in microseconds of this process's CPU time per
request. CPU time rather than wall time, because the machines this runs on are shared and
other processes' load would swamp differences of a few microseconds; for ``key+redis`` it
leaves out the wait for Redis (the round trip, ~50-100 µs on loopback), counting only the
client's work. Results go to bench/results/auth.md.
This is a measurement, not a test.

Usage: python bench/auth_overhead.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from acgs.security import SecuritySettings, create_key, open_key_store
from acgs.services.policy import PolicySettings, create_app

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "auth.md"
BUNDLE = ROOT / "python" / "acgs" / "bundles" / "example.tar.gz"
BODY = orjson.dumps({"input": {"action": "data.read_public", "context": {"agent": {"trust_level": 0.9}}}})
PATH = "/v1/data/acgs/example/allow"


def _scope(token: str | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8004),
    }  # fmt: skip


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


class _Sink:
    status = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def _round(app: Any, token: str | None, n: int) -> float:
    sink = _Sink()
    start = time.process_time()
    for _ in range(n):
        await app(_scope(token), _receive, sink)
    elapsed = time.process_time() - start
    if sink.status != 200:
        raise RuntimeError(f"the benchmark request was answered {sink.status}")
    return elapsed / n * 1e6


def _redis() -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


async def main(requests: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="acgs-auth-bench-"))
    secret = work / "secret"
    secret.write_text("benchmark-secret-benchmark-secret-benchmark")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = work / "pub.pem"
    public.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    base = SecuritySettings(
        auth=True, data_dir=work, jwt_algorithms=("HS256", "RS256"), jwt_hs256_key_file=secret, jwt_public_key_file=public
    )
    _, key = await create_key(open_key_store(base.resolved_key_store()), "bench", ["agent"])
    claims = {"sub": "bench", "roles": ["agent"], "exp": int(time.time()) + 3600}
    hs = jwt.encode(claims, secret.read_text(), algorithm="HS256")
    rs = jwt.encode(claims, private, algorithm="RS256")
    policy = PolicySettings(bundle=BUNDLE)
    configs: dict[str, tuple[Any, str | None]] = {
        "off": (create_app(policy, security=SecuritySettings()), None),
        "api-key": (create_app(policy, security=base), key),
        "jwt-hs256": (create_app(policy, security=base), hs),
        "jwt-rs256": (create_app(policy, security=base), rs),
        "key+limit": (create_app(policy, security=base.replace(rate_limit=1e9, rate_burst=1e9)), key),
    }
    redis = _redis()
    if redis is not None:
        configs["key+redis"] = (create_app(policy, security=base.replace(rate_limit=1e9, rate_burst=1e9, redis_url=redis[1])), key)
    try:
        for app, token in configs.values():
            await _round(app, token, 200)  # warm: bundle, caches, key store, Redis script
        results: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(rounds):
            for name, (app, token) in configs.items():
                results[name].append(await _round(app, token, requests))
    finally:
        if redis is not None:
            redis[0].kill()
    medians = {name: statistics.median(values) for name, values in results.items()}
    fastest = {name: min(values) for name, values in results.items()}
    rows = [
        "| configuration | CPU µs/request, median round | added | CPU µs/request, fastest round | added |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in results:
        rows.append(
            f"| {name} | {medians[name]:.1f} | {medians[name] - medians['off']:+.1f} "
            f"| {fastest[name]:.1f} | {fastest[name] - fastest['off']:+.1f} |"
        )
    table = "\n".join(rows)
    print(table)
    RESULTS.write_text(
        "# Cost of authentication and rate limits on the policy hot path\n\n"
        f"`bench/auth_overhead.py --requests {requests} --rounds {rounds}` on {dt.date.today()} "
        f"({platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end).\n"
        "In-process ASGI calls of `POST /v1/data/acgs/example/allow` answered from the decision cache, "
        "so the gate's share is as large as it gets. CPU time of the benchmark process per request "
        "(the Redis row leaves out the wait for Redis).\n\n"
        f"{table}\n"
    )


def _cli() -> Callable[[], None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    return lambda: asyncio.run(main(args.requests, args.rounds))


if __name__ == "__main__":
    _cli()()
