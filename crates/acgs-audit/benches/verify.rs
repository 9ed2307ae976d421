//! Chain verification throughput on ~300-byte audit events: the whole verify loop (canonical
//! check, content hash, chain hash) and its parts, so a regression can be located.
//!
//! Each case runs twice: on the wall clock, and on the benchmark thread's own CPU time (Linux
//! schedstat). The second is the "events per second on one core" figure even when other
//! processes share the machine, since time spent waiting for a CPU is not counted.
//!
//! `cargo bench -p acgs-audit --bench verify`

use std::hint::black_box;

use acgs_audit::chain::{content_hash, event_hashes, verify_range, StoredEvent, GENESIS};
use acgs_audit::jcs::{canonicalize, canonicalize_value, check_canonical};
use acgs_audit::Hash;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};

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

/// Nanoseconds this thread has run on a CPU, when the kernel reports it.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Criterion measurement of the benchmark thread's CPU time.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns().unwrap_or_default()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().unwrap_or_default().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical >= 1e6 {
            (1e6, "ms cpu")
        } else if typical >= 1e3 {
            (1e3, "µs cpu")
        } else {
            (1.0, "ns cpu")
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let (count, unit) = match *t {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                (n as f64, "Melem/s cpu")
            }
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, "MB/s cpu"),
            Throughput::Bits(n) => (n as f64, "Mbit/s cpu"),
        };
        values.iter_mut().for_each(|v| *v = count * 1e9 / *v / 1e6);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn bench<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let log = log();
    let mean = log.payloads.iter().map(Vec::len).sum::<usize>() / EVENTS;
    let mut group = c.benchmark_group(format!("verify {clock}/{EVENTS} events of {mean} bytes"));
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

fn main() {
    let mut wall = Criterion::default().configure_from_args();
    bench(&mut wall, "wall");
    if thread_cpu_ns().is_some() {
        let mut cpu = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        bench(&mut cpu, "thread-cpu");
    }
    wall.final_summary();
}
