//! One evaluation of each benchmark policy through ACGS and rust-opa-wasm, and evaluations on
//! two threads (ACGS: one `Engine` shared by both threads; rust-opa-wasm: one instance per
//! thread, since its policy is not `Sync`). Times are per evaluation, so for the two-thread
//! groups evals/s = 1e9 / time.

use std::hint::black_box;
use std::time::{Duration, Instant};

use acgs_bench::{cases, Acgs};
#[cfg(feature = "peer")]
use acgs_bench::{result_set, Case, OpaWasmModule};
use criterion::{criterion_group, criterion_main, Criterion};
#[cfg(feature = "peer")]
use serde_json::value::RawValue;

const THREADS: usize = 2;

fn config() -> Criterion {
    // BENCH_QUICK=1 gives a short smoke run; the default is the full measurement.
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (warm, measure, samples) = if quick { (1, 2, 20) } else { (3, 5, 100) };
    Criterion::default()
        .warm_up_time(Duration::from_secs(warm))
        .measurement_time(Duration::from_secs(measure))
        .sample_size(samples)
}

#[cfg(feature = "peer")]
/// Both hosts must give the same result set, or the comparison means nothing.
fn check_same_results(case: &Case, acgs: &Acgs, opa: &OpaWasmModule) {
    let input: &RawValue = match serde_json::from_slice(&case.input) {
        Ok(v) => v,
        Err(e) => panic!("{}: input is not JSON: {e}", case.name),
    };
    let ours = acgs
        .eval(&case.input)
        .unwrap_or_else(|e| panic!("{}: ACGS failed: {e}", case.name));
    let theirs = opa
        .instance()
        .and_then(|mut inst| inst.eval(input))
        .unwrap_or_else(|e| panic!("{}: opa-wasm failed: {e}", case.name));
    let ours = result_set(&ours).unwrap_or_default();
    let theirs = result_set(theirs.get().as_bytes()).unwrap_or_default();
    assert_eq!(ours, theirs, "{}: hosts disagree", case.name);
    assert_ne!(ours, serde_json::json!([]), "{}: result is undefined", case.name);
    eprintln!("{}: both hosts return {}", case.name, ours);
}

fn hosts(c: &mut Criterion) {
    let cases = cases().unwrap_or_else(|e| panic!("cannot load cases: {e:#}"));
    for case in &cases {
        let acgs = Acgs::load(case).unwrap_or_else(|e| panic!("{}: ACGS load: {e:#}", case.name));
        #[cfg(feature = "peer")]
        let opa = OpaWasmModule::load(case).unwrap_or_else(|e| panic!("{}: opa-wasm load: {e:#}", case.name));
        #[cfg(feature = "peer")]
        check_same_results(case, &acgs, &opa);
        #[cfg(feature = "peer")]
        let raw: &RawValue = serde_json::from_slice(&case.input).unwrap_or_else(|e| panic!("{e}"));

        // Variants: no deadline (trusted bundles; what rust-opa-wasm runs by default) and a
        // decision-cache hit (the default configuration on a repeated input).
        let untimed = Acgs::load_with(
            case,
            acgs_core::EngineOptions {
                limits: acgs_core::Limits {
                    timeout_ms: 0,
                    ..acgs_core::Limits::default()
                },
                cache_capacity: 0,
                ..acgs_core::EngineOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let cached = Acgs::load_with(case, acgs_core::EngineOptions::default())
            .unwrap_or_else(|e| panic!("{e:#}"));

        let mut g = c.benchmark_group(format!("single/{}", case.name));
        g.bench_function("acgs", |b| b.iter(|| acgs.eval(black_box(&case.input))));
        g.bench_function("acgs-no-deadline", |b| {
            b.iter(|| untimed.eval(black_box(&case.input)))
        });
        g.bench_function("acgs-cache-hit", |b| {
            b.iter(|| cached.eval(black_box(&case.input)))
        });
        #[cfg(feature = "peer")]
        {
            let mut inst = opa.instance().unwrap_or_else(|e| panic!("{e:#}"));
            g.bench_function("opa-wasm", |b| b.iter(|| inst.eval(black_box(raw))));
        }
        g.finish();

        let mut g = c.benchmark_group(format!("threads2/{}", case.name));
        g.bench_function("acgs", |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(THREADS as u64);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            for _ in 0..per {
                                let _ = black_box(acgs.eval(black_box(&case.input)));
                            }
                        });
                    }
                });
                start.elapsed().mul_f64(iters as f64 / (per * THREADS as u64) as f64)
            })
        });
        g.bench_function("acgs-evaluate_many", |b| {
            b.iter_custom(|iters| {
                let batch: Vec<Vec<u8>> = (0..iters).map(|_| case.input.clone()).collect();
                let start = Instant::now();
                let out = acgs.engine.evaluate_many(
                    Some(acgs.entrypoint),
                    &batch,
                    acgs_core::InputCheck::Validate,
                    acgs_core::Format::Json,
                    THREADS,
                );
                let elapsed = start.elapsed();
                drop(black_box(out));
                elapsed
            })
        });
        #[cfg(feature = "peer")]
        {
            let mut insts: Vec<_> = (0..THREADS)
                .map(|_| opa.instance().unwrap_or_else(|e| panic!("{e:#}")))
                .collect();
            g.bench_function("opa-wasm", |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(THREADS as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for inst in insts.iter_mut() {
                            s.spawn(move || {
                                for _ in 0..per {
                                    let _ = black_box(inst.eval(black_box(raw)));
                                }
                            });
                        }
                    });
                    start.elapsed().mul_f64(iters as f64 / (per * THREADS as u64) as f64)
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = hosts
}
criterion_main!(benches);
