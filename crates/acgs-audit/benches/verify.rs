//! Chain verification throughput on ~300-byte audit events: the whole verify loop (canonical
//! check, content hash, chain hash) and its parts, so a regression can be located.
//!
//! `cargo bench -p acgs-audit --bench verify`

use std::hint::black_box;

use acgs_audit::chain::{content_hash, event_hashes, verify_range, StoredEvent, GENESIS};
use acgs_audit::jcs::{canonicalize, canonicalize_value, check_canonical};
use acgs_audit::Hash;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const EVENTS: usize = 100_000;

/// An event shaped like the audit service's: the seed's fields plus id, time and hashes.
fn event(i: usize) -> Vec<u8> {
    let value = serde_json::json!({
        "event_id": format!("01J{:023}", i),
        "timestamp": format!("2026-11-25T12:{:02}:{:02}.{:06}Z", i / 60 % 60, i % 60, i % 1_000_000),
        "event_type": if i % 3 == 0 { "policy_decision" } else { "tool_call" },
        "agent_id": format!("agent-{}", i % 97),
        "action": "files.write",
        "result": if i % 5 == 0 { "deny" } else { "allow" },
        "decision_id": format!("d-{:012x}", i * 7919),
        "constitutional_hash": "cdd01ef066bc6cf2",
        "metadata": {"path": format!("/srv/data/{}.txt", i % 1000), "bytes": i % 65536, "risk": 0.25},
    });
    canonicalize_value(&value).unwrap_or_default()
}

struct Log {
    payloads: Vec<Vec<u8>>,
    contents: Vec<Hash>,
    chains: Vec<Hash>,
}

fn log() -> Log {
    let payloads: Vec<Vec<u8>> = (0..EVENTS).map(event).collect();
    let mut prev = GENESIS;
    let mut contents = Vec::with_capacity(EVENTS);
    let mut chains = Vec::with_capacity(EVENTS);
    for p in &payloads {
        let (c, h) = event_hashes(&prev, p).unwrap_or_default();
        contents.push(c);
        chains.push(h);
        prev = h;
    }
    Log {
        payloads,
        contents,
        chains,
    }
}

fn bench(c: &mut Criterion) {
    let log = log();
    let mean = log.payloads.iter().map(Vec::len).sum::<usize>() / EVENTS;
    let mut group = c.benchmark_group(format!("verify/{EVENTS} events of {mean} bytes"));
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);

    group.bench_function("verify_range", |b| {
        b.iter(|| {
            let events = log
                .payloads
                .iter()
                .zip(&log.contents)
                .zip(&log.chains)
                .enumerate()
                .map(|(i, ((p, c), h))| StoredEvent {
                    index: Some(i as u64),
                    payload: p,
                    content_hash: c,
                    chain_hash: h,
                });
            let report = verify_range(&GENESIS, 0, events);
            assert!(report.ok());
            black_box(report)
        })
    });
    group.bench_function("check_canonical only", |b| {
        b.iter(|| {
            for p in &log.payloads {
                black_box(check_canonical(black_box(p)).is_ok());
            }
        })
    });
    group.bench_function("content_hash only", |b| {
        b.iter(|| {
            for p in &log.payloads {
                black_box(content_hash(black_box(p)));
            }
        })
    });
    group.bench_function("canonicalize (parse and rewrite)", |b| {
        b.iter(|| {
            for p in &log.payloads {
                black_box(canonicalize(black_box(p)).is_ok());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
