//! CPU time per evaluation of the same policies and inputs through ACGS's Wasm host, ACGS's plan
//! evaluator, regorus's interpreter and regorus's RVM, in one process (`bench/peers.py` runs it
//! and adds `opa bench` and regopy). Each iteration evaluates the next input of the case in turn,
//! JSON text in and JSON text out. Times are this thread's CPU time (CLOCK_THREAD_CPUTIME_ID),
//! so time slices that other processes take on a loaded machine do not count.
//!
//!     CARGO_TARGET_DIR=~/.cache/acgs/bench-target cargo bench --bench peers
//!     PEERS_ONLY=rbac,gateway BENCH_QUICK=1 cargo bench --bench peers
//!
//! An engine that cannot load a policy or fails on one of its inputs is not timed on it; the
//! reason is printed (and `peers_check` reports it to the driver).

use std::hint::black_box;
use std::time::Duration;

use acgs_bench::peers::{peer_cases, thread_cpu, Evaluator, ENGINES};
use criterion::{criterion_group, criterion_main, Criterion};

fn config() -> Criterion {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (warm, measure, samples) = if quick { (1, 2, 20) } else { (2, 5, 50) };
    Criterion::default()
        .warm_up_time(Duration::from_secs(warm))
        .measurement_time(Duration::from_secs(measure))
        .sample_size(samples)
}

fn peers(c: &mut Criterion) {
    let only = std::env::var("PEERS_ONLY").ok();
    let cases = peer_cases(only.as_deref()).unwrap_or_else(|e| panic!("cannot load cases: {e:#}"));
    for case in &cases {
        let mut g = c.benchmark_group(case.name.as_str());
        for engine in ENGINES {
            let mut ev = match Evaluator::load(engine, case) {
                Ok(ev) => ev,
                Err(e) => {
                    eprintln!("{}/{engine}: not measured, cannot load: {e:#}", case.name);
                    continue;
                }
            };
            if let Some((i, e)) = case
                .inputs
                .iter()
                .enumerate()
                .find_map(|(i, input)| ev.eval(input).err().map(|e| (i, e)))
            {
                eprintln!(
                    "{}/{engine}: not measured, input {i} fails: {e:#}",
                    case.name
                );
                continue;
            }
            let inputs = &case.inputs;
            g.bench_function(engine, |b| {
                b.iter_custom(|iters| {
                    let start = thread_cpu();
                    for k in 0..iters {
                        let input = &inputs[(k as usize) % inputs.len()];
                        let _ = black_box(ev.eval(black_box(input)));
                    }
                    thread_cpu().saturating_sub(start)
                })
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = peers
}
criterion_main!(benches);
