//! Prints, as one JSON document, what every engine of the peer comparison returns on every
//! input of every case (`bench/peers.py` compares them with ACGS's Wasm, `opa eval` and regopy):
//! `{case: {"entrypoint", "inputs", "engines": {engine: {"status": "ok", "results": [value or
//! null when undefined]} | {"status": "unsupported" | "error", "reason"}}}}`.
//!
//!     cargo run --release --bin peers_check [CASES]

use acgs_bench::peers::{peer_cases, Evaluator, ENGINES};
use serde_json::{json, Map, Value};

fn main() -> anyhow::Result<()> {
    let only = std::env::args().nth(1);
    let mut out = Map::new();
    for case in peer_cases(only.as_deref())? {
        let mut engines = Map::new();
        for engine in ENGINES {
            let entry = match Evaluator::load(engine, &case) {
                Err(e) => json!({"status": "unsupported", "reason": format!("{e:#}")}),
                Ok(mut ev) => {
                    let results: Result<Vec<Value>, String> = case
                        .inputs
                        .iter()
                        .enumerate()
                        .map(|(i, input)| {
                            ev.value(input)
                                .map(|v| v.unwrap_or(Value::Null))
                                .map_err(|e| format!("input {i}: {e:#}"))
                        })
                        .collect();
                    match results {
                        Ok(results) => json!({"status": "ok", "results": results}),
                        Err(reason) => json!({"status": "error", "reason": reason}),
                    }
                }
            };
            engines.insert(engine.to_string(), entry);
        }
        out.insert(
            case.name.clone(),
            json!({"entrypoint": case.entrypoint, "bundle": case.bundle.strip_prefix(acgs_bench::peers::repo_root()).unwrap_or(&case.bundle), "sources": case.sources.iter().map(|p| p.strip_prefix(acgs_bench::peers::repo_root()).unwrap_or(p)).collect::<Vec<_>>(), "inputs": case.inputs, "engines": engines}),
        );
    }
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    Ok(())
}
