//! `Engine::decide` on the shipped constitution, in-process: a decision-cache hit, the fast
//! path (the partial evaluator), and a full evaluation by the native evaluator and by the Wasm. Each request is the seed request
//! from the original ACGS API documentation (resources inside the limits) or a variant of it
//! that the fast path must leave to full evaluation.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use acgs_core::{Bundle, Engine, EngineOptions};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;

fn seed() -> serde_json::Value {
    json!({
        "type": "constitutional_evaluation",
        "constitutional_hash": "cdd01ef066bc6cf2",
        "action": "data.read_public",
        "context": {
            "environment": {"sandbox_enabled": true, "audit_enabled": true, "isolation_level": "strict"},
            "agent": {
                "trust_level": 0.9,
                "requested_resources": {"cpu_cores": 2, "memory_gb": 4, "disk_gb": 10, "network_mbps": 10},
                "capabilities": ["data_read", "compute_analysis"]
            },
            "responsible_party": "user@example.com",
            "explanation": "Reading public dataset for analysis",
            "urgency": "normal",
            "session_id": "sess_123456"
        }
    })
}

fn engine(options: EngineOptions) -> Engine {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python/acgs/bundles/constitution.tar.gz");
    let bundle = Bundle::from_path(&p).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(bundle, options).unwrap_or_else(|e| panic!("{e}"))
}

fn decide(c: &mut Criterion) {
    let seed_bytes = serde_json::to_vec(&seed()).unwrap_or_default();
    // A benefit assessment takes the request off the fast path (the contract requires it
    // absent), so it is answered by the cache or by full evaluation.
    let mut assessed = seed();
    assessed["context"]["benefit_assessment"] = json!(0.9);
    let assessed = serde_json::to_vec(&assessed).unwrap_or_default();

    let cached = engine(EngineOptions::default());
    let fast = engine(EngineOptions { cache_capacity: 0, ..EngineOptions::default() });
    let full = engine(EngineOptions { cache_capacity: 0, fast_path: false, ..EngineOptions::default() });
    let wasm = engine(EngineOptions { cache_capacity: 0, fast_path: false, native: false, ..EngineOptions::default() });
    assert!(full.loaded().native.is_some() && wasm.loaded().native.is_none());

    let check = |e: &Engine, req: &[u8], want_cache: bool, want_fast: bool| {
        let d = e.decide(req).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((d.cache_hit, d.fast_path), (want_cache, want_fast));
    };
    cached.decide(&assessed).unwrap_or_else(|e| panic!("{e}"));
    check(&cached, &assessed, true, false);
    check(&fast, &seed_bytes, false, true);
    check(&full, &seed_bytes, false, false);
    check(&wasm, &seed_bytes, false, false);

    let mut g = c.benchmark_group("decide/constitution");
    g.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(4));
    g.bench_function("cache-hit", |b| b.iter(|| cached.decide(black_box(&assessed))));
    g.bench_function("fast-path", |b| b.iter(|| fast.decide(black_box(&seed_bytes))));
    g.bench_function("full-evaluation/native", |b| b.iter(|| full.decide(black_box(&seed_bytes))));
    g.bench_function("full-evaluation/wasm", |b| b.iter(|| wasm.decide(black_box(&seed_bytes))));
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
