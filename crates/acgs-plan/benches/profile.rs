//! A plain binary for instruction counts (steady on a loaded machine, unlike wall time): it
//! evaluates one entrypoint of the shipped constitution on the first 200 corpus seeds,
//! `ACGS_PLAN_ROUNDS` times (default 5), through the plan (input parsed beforehand) or, with
//! `ACGS_PLAN_ENGINE=wasm`, through OPA's Wasm (which parses its JSON input on every call).
//!
//!     cargo bench -p acgs-plan --bench profile --no-run
//!     valgrind --tool=callgrind --toggle-collect='*evaluate_all*' <binary> acgs/main/decision
//!
//! Instructions per evaluation = the collected total / (200 * rounds).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::path::PathBuf;

use acgs_core::wasm::{Format, Instance, Limits as WasmLimits, Policy};
use acgs_core::Bundle;
use acgs_plan::{Limits, Plan, Val};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[inline(never)]
fn evaluate_all(plan: &Plan, ep: usize, inputs: &[Val], data: &Val, rounds: usize) -> usize {
    let mut defined = 0;
    for _ in 0..rounds {
        for input in inputs {
            let r = plan
                .eval_value(ep, Some(input), data, Limits::default())
                .unwrap();
            defined += usize::from(black_box(r).is_some());
        }
    }
    defined
}

#[inline(never)]
fn evaluate_all_wasm(instance: &mut Instance, id: i32, texts: &[String], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        for text in texts {
            let r = instance
                .eval(id, Some(text.as_bytes()), Format::Json)
                .unwrap();
            n += usize::from(black_box(r).as_slice() != b"[]");
        }
    }
    n
}

fn main() {
    let entrypoint = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "acgs/main/decision".to_owned());
    let rounds = std::env::var("ACGS_PLAN_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let bundle = Bundle::from_path(&root().join("bundles/constitution.tar.gz")).unwrap();
    let plan = Plan::from_json(bundle.plan_json().unwrap()).unwrap();
    let data = Val::parse(serde_json::to_string(&bundle.data).unwrap().as_bytes()).unwrap();
    let name = entrypoint.replace('/', "_") + ".jsonl";
    let texts: Vec<String> =
        std::fs::read_to_string(root().join("crates/acgs-plan/tests/corpus").join(name))
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .take(200)
            .map(str::to_owned)
            .collect();
    let wasm = std::env::var("ACGS_PLAN_ENGINE").is_ok_and(|e| e == "wasm");
    let start;
    let defined = if wasm {
        let (policy, mut instance) =
            Policy::compile(&bundle.wasm, &bundle.data, WasmLimits::default()).unwrap();
        let id = policy.entrypoints()[entrypoint.as_str()];
        start = std::time::Instant::now();
        evaluate_all_wasm(&mut instance, id, &texts, rounds)
    } else {
        let inputs: Vec<Val> = texts
            .iter()
            .map(|t| Val::parse(t.as_bytes()).unwrap())
            .collect();
        let ep = plan.entrypoint(&entrypoint).unwrap();
        start = std::time::Instant::now();
        evaluate_all(&plan, ep, &inputs, &data, rounds)
    };
    let n = texts.len() * rounds;
    println!(
        "{entrypoint} ({}): {n} evaluations ({defined} defined), {:.1} us each",
        if wasm { "wasm" } else { "plan" },
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
