//! The engine with `evaluator: Plan` against the same engine on the Wasm: the same result-set
//! bytes on every entrypoint of the shipped bundles over the plan crate's corpus, the same errors
//! for bad input and for policies that run past their limits, and bundles without a usable plan
//! refused (Plan) or run on the Wasm with the reason recorded (Auto).
//!
//! "The same bytes" up to one thing: OPA's Wasm lists an object's keys and a set's members in
//! its hash-table order, the plan in sorted order. Outputs that differ are compared again with
//! every object and set sorted (numbers keep their spelling): equal there, they count as an
//! order-only difference, and only outputs with a collection of two or more members may have one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use acgs_core::engine::Evaluator;
use acgs_core::{Bundle, Engine, EngineOptions, Error, Format, InputCheck, Limits};
use acgs_plan::Val;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file of a bundle archive, keyed as `Bundle::from_files` wants them.
fn files(path: &str) -> BTreeMap<String, Vec<u8>> {
    let raw = std::fs::read(repo().join(path)).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(raw.as_slice()));
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('/')
            .to_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        out.insert(name, body);
    }
    out
}

fn options(evaluator: Evaluator, limits: Limits) -> EngineOptions {
    // Only the full evaluation under test: no cache, fast path or hand-written evaluator.
    EngineOptions {
        limits,
        cache_capacity: 0,
        fast_path: false,
        native: false,
        evaluator,
        ..EngineOptions::default()
    }
}

fn engine(path: &str, evaluator: Evaluator, limits: Limits) -> Engine {
    Engine::new(
        Bundle::from_path(&repo().join(path)).unwrap(),
        options(evaluator, limits),
    )
    .unwrap()
}

fn corpus(entrypoint: &str) -> Vec<String> {
    let name = entrypoint.replace('/', "_") + ".jsonl";
    let text =
        std::fs::read_to_string(repo().join("crates/acgs-plan/tests/corpus").join(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Result-set bytes, or the error's code and message.
fn outcome(e: &Engine, ep: &str, input: Option<&[u8]>, format: Format) -> Result<String, String> {
    e.evaluate(Some(ep), input, InputCheck::Validate, format)
        .map(|b| String::from_utf8(b).unwrap())
        .map_err(|e| format!("{}: {e}", e.code()))
}

/// Inputs beside the corpus seeds: numbers spelt otherwise, scalars, Rego value text, junk.
const ODD_INPUTS: &[&str] = &[
    "null",
    "true",
    "0",
    "1.50",
    "1e400",
    "\"text\"",
    "[]",
    "{}",
    "{\"action\": 1.0E+2, \"context\": {\"agent\": {\"trust_level\": 9.0e-1}}}",
    "{\"action\": \"data.read_public\", \"context\": {\"agent\": {\"trust_level\": 0.80000000000000000001}}}",
    "{\"type\": {1, 2}, \"action\": set()}",
    "{not json",
    "[1, 2",
    "\"\\ud800\"",
];

/// Whether two outcomes agree: the same bytes, or the same value and spellings in another
/// member order (`true` in the second field then).
fn agree(want: &Result<String, String>, got: &Result<String, String>) -> (bool, bool) {
    if want == got {
        return (true, false);
    }
    let (Ok(w), Ok(g)) = (want, got) else {
        return (false, false);
    };
    // JSON writes sets as arrays, so there arrays are compared as multisets too.
    let json = w.starts_with('[');
    let canon = |t: &str| Val::parse(t.as_bytes()).map(|v| sorted(v, json).to_rego());
    match (canon(w), canon(g)) {
        (Ok(a), Ok(b)) if a == b && has_ordered_members(&Val::parse(w.as_bytes()).unwrap()) => {
            (true, true)
        }
        _ => (false, false),
    }
}

fn sorted(v: Val, arrays: bool) -> Val {
    match v {
        Val::Arr(a) => {
            let mut items: Vec<Val> = a.iter().cloned().map(|x| sorted(x, arrays)).collect();
            if arrays {
                items.sort();
            }
            Val::Arr(std::sync::Arc::new(items))
        }
        Val::Obj(o) => Val::Obj(std::sync::Arc::new(
            o.iter()
                .map(|(k, x)| (k.clone(), sorted(x.clone(), arrays)))
                .collect(),
        )),
        Val::Set(s) => Val::Set(std::sync::Arc::new(
            s.iter().cloned().map(|x| sorted(x, arrays)).collect(),
        )),
        other => other,
    }
}

/// An object or set of two or more members anywhere in `v` (in JSON, sets are arrays).
fn has_ordered_members(v: &Val) -> bool {
    match v {
        Val::Obj(o) => o.len() > 1 || o.values().any(has_ordered_members),
        Val::Set(s) => s.len() > 1 || s.iter().any(has_ordered_members),
        Val::Arr(a) => a.len() > 1 || a.iter().any(has_ordered_members),
        _ => false,
    }
}

fn compare_bundle(path: &str, entrypoints: &[(&str, &str)]) {
    let wasm = engine(path, Evaluator::Wasm, Limits::default());
    let plan = engine(path, Evaluator::Plan, Limits::default());
    assert_eq!(plan.loaded().evaluator(), Evaluator::Plan);
    assert_eq!(wasm.loaded().evaluator(), Evaluator::Wasm);
    let mut mismatches = Vec::new();
    let (mut total, mut order_only, mut exact) = (0, 0, 0);
    for (ep, corpus_of) in entrypoints {
        let mut inputs = corpus(corpus_of);
        inputs.extend(ODD_INPUTS.iter().map(|s| (*s).to_owned()));
        for (i, input) in inputs.iter().enumerate() {
            // Rego value text for every eighth input: sets kept, as the conformance runner reads.
            let formats: &[Format] = if i % 8 == 0 {
                &[Format::Json, Format::Rego]
            } else {
                &[Format::Json]
            };
            for &format in formats {
                total += 1;
                let want = outcome(&wasm, ep, Some(input.as_bytes()), format);
                let got = outcome(&plan, ep, Some(input.as_bytes()), format);
                let (same, reordered) = agree(&want, &got);
                order_only += usize::from(reordered);
                exact += usize::from(same && !reordered);
                if !same {
                    mismatches.push(format!(
                        "{ep} {format:?} {input}\n  wasm: {want:?}\n  plan: {got:?}"
                    ));
                }
            }
        }
        total += 1;
        let (want, got) = (
            outcome(&wasm, ep, None, Format::Json),
            outcome(&plan, ep, None, Format::Json),
        );
        if !agree(&want, &got).0 {
            mismatches.push(format!(
                "{ep} without input\n  wasm: {want:?}\n  plan: {got:?}"
            ));
        }
    }
    eprintln!(
        "{path}: {total} evaluations, {exact} byte-identical, {order_only} in another member order"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {total} evaluations differ; first:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
}

#[test]
fn constitution_entrypoints_give_the_wasm_bytes() {
    compare_bundle(
        "bundles/constitution.tar.gz",
        &[
            ("acgs/main/decision", "acgs/main/decision"),
            ("acgs/main/allow", "acgs/main/decision"),
            ("acgs/evolution/decision", "acgs/evolution/decision"),
            ("acgs/sandbox/decision", "acgs/sandbox/decision"),
            ("acgs/fast_path/route", "acgs/fast_path/route"),
            ("acgs/tools/decision", "acgs/tools/decision"),
        ],
    );
}

#[test]
fn example_entrypoints_give_the_wasm_bytes() {
    compare_bundle(
        "bundles/example.tar.gz",
        &[
            ("acgs/example/allow", "acgs/main/decision"),
            ("acgs/example/decision", "acgs/main/decision"),
        ],
    );
}

#[test]
fn the_decision_pipeline_gives_the_same_decisions_on_the_plan() {
    // The whole pipeline (cache, fast path, hand-written evaluator on) with the plan behind it.
    let on = |evaluator| {
        Engine::new(
            Bundle::from_path(&repo().join("bundles/constitution.tar.gz")).unwrap(),
            EngineOptions {
                evaluator,
                ..EngineOptions::default()
            },
        )
        .unwrap()
    };
    let (wasm, plan) = (on(Evaluator::Wasm), on(Evaluator::Plan));
    for input in corpus("acgs/main/decision").iter().take(200) {
        for ep in ["acgs/main/decision", "acgs/evolution/decision"] {
            let want = outcome(&wasm, ep, Some(input.as_bytes()), Format::Json);
            let got = outcome(&plan, ep, Some(input.as_bytes()), Format::Json);
            assert!(agree(&want, &got).0, "{ep} {input}\n{want:?}\n{got:?}");
        }
    }
}

#[test]
fn a_bundle_without_a_plan_is_refused_under_plan_and_runs_on_the_wasm_under_auto() {
    let mut without = files("bundles/example.tar.gz");
    assert!(without.remove("plan.json").is_some());
    let refused = Engine::new(
        Bundle::from_files(without.clone()).unwrap(),
        options(Evaluator::Plan, Limits::default()),
    );
    match refused {
        Err(Error::Bundle(msg)) => assert!(msg.contains("no /plan.json"), "{msg}"),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a bundle without a plan loaded under evaluator Plan"),
    }
    let auto = Engine::new(
        Bundle::from_files(without).unwrap(),
        options(Evaluator::Auto, Limits::default()),
    )
    .unwrap();
    let loaded = auto.loaded();
    assert_eq!(loaded.evaluator(), Evaluator::Wasm);
    assert!(
        loaded
            .plan_error
            .as_deref()
            .unwrap()
            .contains("no /plan.json"),
        "{:?}",
        loaded.plan_error
    );
    let good = r#"{"action":"data.read_public","context":{"environment":{"sandbox_enabled":true},"agent":{"trust_level":0.9}}}"#;
    assert_eq!(
        outcome(
            &auto,
            "acgs/example/allow",
            Some(good.as_bytes()),
            Format::Json
        )
        .unwrap(),
        r#"[{"result":true}]"#
    );

    // With a plan it accepts, Auto runs the plan and records nothing.
    let auto = engine("bundles/example.tar.gz", Evaluator::Auto, Limits::default());
    assert_eq!(auto.loaded().evaluator(), Evaluator::Plan);
    assert_eq!(auto.loaded().plan_error, None);
    // Auto is the default; the Wasm asked for never reads the plan.
    assert_eq!(EngineOptions::default().evaluator, Evaluator::Auto);
    let wasm = engine("bundles/example.tar.gz", Evaluator::Wasm, Limits::default());
    assert_eq!(wasm.loaded().plan_error, None);
}

#[test]
fn a_plan_the_evaluator_refuses_names_the_reason() {
    let cases: [(&[u8], &str); 3] = [
        (b"{not a plan", "not a valid plan"),
        // A call to a builtin that does not exist.
        (
            br#"{"static":{"strings":[],"builtin_funcs":[{"name":"no.such_builtin","decl":{"args":[],"result":{"type":"any"}}}]},"plans":{"plans":[{"name":"acgs/example/allow","blocks":[{"stmts":[{"type":"CallStmt","stmt":{"func":"no.such_builtin","args":[],"result":2}}]}]}]},"funcs":{"funcs":[]}}"#,
            "no.such_builtin",
        ),
        // A plan that lacks an entrypoint the Wasm exports.
        (
            br#"{"static":{"strings":[]},"plans":{"plans":[]},"funcs":{"funcs":[]}}"#,
            "lacks entrypoint",
        ),
    ];
    for (plan_json, why) in cases {
        let mut f = files("bundles/example.tar.gz");
        f.insert("plan.json".into(), plan_json.to_vec());
        let refused = Engine::new(
            Bundle::from_files(f.clone()).unwrap(),
            options(Evaluator::Plan, Limits::default()),
        );
        match refused {
            Err(Error::Bundle(msg)) => assert!(msg.contains(why), "{why}: {msg}"),
            Err(other) => panic!("wrong error: {other}"),
            Ok(_) => panic!("a bad plan loaded: {why}"),
        }
        let auto = Engine::new(
            Bundle::from_files(f).unwrap(),
            options(Evaluator::Auto, Limits::default()),
        )
        .unwrap();
        assert_eq!(auto.loaded().evaluator(), Evaluator::Wasm);
        let err = auto.loaded().plan_error.clone().unwrap();
        assert!(err.contains(why), "{why}: {err}");
    }
}

/// `{"items": [0, 1, ..., n-1], "stop": -1}`: stress/spin visits n^3 triples.
fn spin_input(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(r#"{{"items":[{}],"stop":-1}}"#, items.join(","))
}

#[test]
fn runaway_policies_stop_with_the_wasm_errors() {
    let limits = Limits {
        timeout_ms: 50,
        memory_bytes: 64 * 1024 * 1024,
    };
    let fixture = "tests/fixtures/stress.tar.gz";
    let (wasm, plan) = (
        engine(fixture, Evaluator::Wasm, limits),
        engine(fixture, Evaluator::Plan, limits),
    );
    let code = |r: Result<String, String>| r.unwrap_err().split(':').next().unwrap().to_owned();
    let spin = spin_input(2000);
    let started = std::time::Instant::now();
    let got = outcome(&plan, "stress/spin", Some(spin.as_bytes()), Format::Json);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(code(got.clone()), "evaluation_timeout", "{got:?}");
    assert_eq!(
        code(outcome(
            &wasm,
            "stress/spin",
            Some(spin.as_bytes()),
            Format::Json
        )),
        "evaluation_timeout"
    );

    // Memory: a deadline far away, so only the memory cap can stop it (as in tests/engine.rs).
    let limits = Limits {
        timeout_ms: 60_000,
        memory_bytes: 64 * 1024 * 1024,
    };
    let (wasm, plan) = (
        engine(fixture, Evaluator::Wasm, limits),
        engine(fixture, Evaluator::Plan, limits),
    );
    let hog = br#"{"n": 100000000}"#;
    let got = outcome(&plan, "stress/hog", Some(hog), Format::Json);
    assert_eq!(code(got.clone()), "resource_limit_exceeded", "{got:?}");
    assert_eq!(
        code(outcome(&wasm, "stress/hog", Some(hog), Format::Json)),
        "resource_limit_exceeded"
    );

    // An input that cannot fit the memory cap is refused as the Wasm refuses it.
    let small = Limits {
        timeout_ms: 1000,
        memory_bytes: 4 * 1024 * 1024,
    };
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(8 * 1024 * 1024));
    for e in [
        engine(fixture, Evaluator::Wasm, small),
        engine(fixture, Evaluator::Plan, small),
    ] {
        assert_eq!(
            code(outcome(
                &e,
                "stress/echo",
                Some(big.as_bytes()),
                Format::Json
            )),
            "resource_limit_exceeded"
        );
    }

    // Both recover, and agree on small inputs, the set and the upper-casing included.
    for ep_input in [
        ("stress/spin", spin_input(10)),
        ("stress/hog", r#"{"n": 2}"#.to_owned()),
        ("stress/both", r#"{"name": "straße ǆ i"}"#.to_owned()),
    ] {
        for format in [Format::Json, Format::Rego] {
            let want = outcome(&wasm, ep_input.0, Some(ep_input.1.as_bytes()), format);
            let got = outcome(&plan, ep_input.0, Some(ep_input.1.as_bytes()), format);
            assert!(agree(&want, &got).0, "{ep_input:?}\n{want:?}\n{got:?}");
        }
    }
}

#[test]
fn unknown_evaluator_names_are_refused() {
    assert_eq!("plan".parse::<Evaluator>().unwrap(), Evaluator::Plan);
    assert_eq!("auto".parse::<Evaluator>().unwrap(), Evaluator::Auto);
    assert_eq!("wasm".parse::<Evaluator>().unwrap(), Evaluator::Wasm);
    for bad in ["", "PLAN", "native", "wasm "] {
        assert!(
            matches!(bad.parse::<Evaluator>(), Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn arithmetic_results_and_case_mappings_are_spelt_as_the_wasm_spells_them() {
    // tests/fixtures/spelling/spelling.rego: products, sums and quotients that libmpdec spells
    // with their exponent (3.50, 1.0e+10, 1e-7), sprintf over them, upper and lower outside
    // ASCII (ß, ǆ, ᾀ, İ, final Σ).
    let fixture = "crates/acgs-core/tests/fixtures/spelling.tar.gz"; // from the repository root
    let wasm = engine(fixture, Evaluator::Wasm, Limits::default());
    let plan = engine(fixture, Evaluator::Plan, Limits::default());
    for x in ["1.10", "2", "1e2", "-0.5", "2.50", "1E-7", "123456789012"] {
        let input = format!(r#"{{"x": {x}}}"#);
        for format in [Format::Json, Format::Rego] {
            let want = outcome(&wasm, "t/nums", Some(input.as_bytes()), format);
            let got = outcome(&plan, "t/nums", Some(input.as_bytes()), format);
            assert!(agree(&want, &got).0, "x = {x}\n{want:?}\n{got:?}");
        }
    }
    let out = outcome(&plan, "t/nums", Some(br#"{"x": 1.10}"#), Format::Json).unwrap();
    for spelt in [
        r#""a":3.50"#,
        r#""b":1.0e+10"#,
        r#""p":1e-7"#,
        r#""w":2.000000000000000001"#,
        "STRAßE Ǆ ᾈ ŉ",
        "istanbul σασ",
    ] {
        assert!(out.contains(spelt), "{spelt} in {out}");
    }
}

#[test]
fn hostile_inputs_get_the_wasm_error_codes() {
    let wasm = engine("bundles/example.tar.gz", Evaluator::Wasm, Limits::default());
    let plan = engine("bundles/example.tar.gz", Evaluator::Plan, Limits::default());
    let code = |r: Result<String, String>| match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.split(':').next().unwrap().to_owned(),
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let inputs: [&[u8]; 6] = [
        deep.as_bytes(),
        br#"{"x": "\udc00"}"#,
        br#"{"x": "\ud800"}"#,
        br#"{"x": "\\ud800"}"#,
        br#"{"x": 1e999999999}"#,
        b"{\"x\": \"\\u0000\\u001f\"}",
    ];
    for input in inputs {
        let want = outcome(&wasm, "acgs/example/allow", Some(input), Format::Json);
        let got = outcome(&plan, "acgs/example/allow", Some(input), Format::Json);
        assert_eq!(
            code(want.clone()),
            code(got.clone()),
            "{}\n{want:?}\n{got:?}",
            String::from_utf8_lossy(&input[..input.len().min(40)])
        );
    }
}
