//! The shipped constitution's entrypoints through the plan evaluator and through OPA's Wasm, on
//! the same inputs in one run (the seeds of tests/corpus/, taken in turn).
//!
//!     cargo bench -p acgs-plan --bench constitution

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use acgs_core::wasm::{Format, Limits as WasmLimits, Policy};
use acgs_core::Bundle;
use acgs_plan::{Limits, Plan, Val};
use criterion::{criterion_group, criterion_main, Criterion};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(entrypoint: &str) -> Vec<String> {
    let name = entrypoint.replace('/', "_") + ".jsonl";
    std::fs::read_to_string(root().join("crates/acgs-plan/tests/corpus").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .take(200)
        .map(str::to_owned)
        .collect()
}

fn bench(c: &mut Criterion) {
    let bundle = Bundle::from_path(&root().join("bundles/constitution.tar.gz")).unwrap();
    let plan = Plan::from_json(bundle.plan_json().unwrap()).unwrap();
    let data = Val::parse(serde_json::to_string(&bundle.data).unwrap().as_bytes()).unwrap();
    let (policy, mut instance) =
        Policy::compile(&bundle.wasm, &bundle.data, WasmLimits::default()).unwrap();
    for entrypoint in [
        "acgs/main/decision",
        "acgs/evolution/decision",
        "acgs/sandbox/decision",
        "acgs/tools/decision",
    ] {
        let texts = corpus(entrypoint);
        let parsed: Vec<Val> = texts
            .iter()
            .map(|t| Val::parse(t.as_bytes()).unwrap())
            .collect();
        let ep = plan.entrypoint(entrypoint).unwrap();
        let id = policy.entrypoints()[entrypoint];
        let mut g = c.benchmark_group(entrypoint);
        let mut i = 0;
        // Input parsing included, as the Wasm parses its input too.
        g.bench_function("plan", |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                let input = Val::parse(texts[i].as_bytes()).unwrap();
                plan.eval(ep, Some(&input), &data, Limits::default())
                    .unwrap()
            })
        });
        g.bench_function("plan (parsed input)", |b| {
            b.iter(|| {
                i = (i + 1) % parsed.len();
                plan.eval(ep, Some(&parsed[i]), &data, Limits::default())
                    .unwrap()
            })
        });
        g.bench_function("wasm", |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                instance
                    .eval(id, Some(texts[i].as_bytes()), Format::Json)
                    .unwrap()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
