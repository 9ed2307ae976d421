"""Memory stays flat over a million evaluations: the heap resets between evaluations."""

from __future__ import annotations

import os

import acgs

GOOD = {
    "action": "data.read_public",
    "context": {"environment": {"sandbox_enabled": True}, "agent": {"trust_level": 0.9}},
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_rss_is_flat_over_a_million_evaluations() -> None:
    # The decision cache is off: every call must be a real evaluation.
    engine = acgs.Engine.load(acgs.default_bundle_path().with_name("example.tar.gz"), cache_size=0)
    batch = [GOOD] * 10_000
    for _ in range(5):  # warm every pooled instance and the allocator
        assert engine.evaluate_many(batch, "acgs/example/decision", threads=2)[0]["allow"] is True
    before = rss_bytes()
    for _ in range(100):
        results = engine.evaluate_many(batch, "acgs/example/decision", threads=2)
        assert results[-1]["allow"] is True
    grown = rss_bytes() - before
    assert grown < 16 << 20, f"RSS grew by {grown} bytes over 1,000,000 evaluations"
