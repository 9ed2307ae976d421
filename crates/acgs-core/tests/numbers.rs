//! Numbers decide nothing by their spelling: at and around every numeric bound of the shipped
//! constitution's fast-path contract, the fast path, the native evaluator and the Wasm give
//! the same decision for the same input bytes, and the fast path never serves a value a hair
//! past a bound (a double would round `2.0000000000000000001` to `2`). The Python suite
//! (tests/security/test_numbers.py) compares the same kind of inputs with OPA itself and
//! through every route of the policy service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;

use acgs_core::{Bundle, Engine, EngineOptions, Format, InputCheck};
use serde_json::{json, Value};

const DECISION: &str = "acgs/main/decision";

fn shipped(fast_path: bool, native: bool) -> Engine {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../python/acgs/bundles/constitution.tar.gz");
    let options = EngineOptions {
        cache_capacity: 0,
        fast_path,
        native,
        ..EngineOptions::default()
    };
    Engine::new(Bundle::from_path(&p).unwrap(), options).unwrap()
}

fn decision(e: &Engine, raw: &[u8]) -> Value {
    let set = e
        .evaluate(
            Some(DECISION),
            Some(raw),
            InputCheck::Validate,
            Format::Json,
        )
        .unwrap();
    serde_json::from_slice(&set).unwrap()
}

/// Every `gte`/`lte` condition of the contract, `any_of` branches included: (path, op, bound).
fn bounds(spec: &Value) -> Vec<(Vec<String>, String, Value)> {
    let mut leaves: Vec<&Value> = Vec::new();
    for c in spec["allow_conditions"].as_array().unwrap() {
        if c["op"] == "any_of" {
            for branch in c["value"].as_array().unwrap() {
                leaves.extend(branch.as_array().unwrap());
            }
        } else {
            leaves.push(c);
        }
    }
    leaves
        .into_iter()
        .filter(|leaf| leaf["op"] == "gte" || leaf["op"] == "lte")
        .map(|leaf| {
            let path = leaf["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            let op = leaf["op"].as_str().unwrap().to_owned();
            (path, op, leaf["value"].clone())
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Below,
    At,
    Above,
}

/// `bound` minus one unit in the `places`-th decimal place, written out in full.
fn just_below(int: &str, frac: &str, places: usize) -> String {
    let mut digits: Vec<u8> = format!("{int}{frac:0<places$}").bytes().collect();
    for d in digits.iter_mut().rev() {
        if *d == b'0' {
            *d = b'9';
        } else {
            *d -= 1;
            break;
        }
    }
    let s = String::from_utf8(digits).unwrap();
    let (a, b) = s.split_at(int.len());
    let a = a.trim_start_matches('0');
    format!("{}.{b}", if a.is_empty() { "0" } else { a })
}

/// `digits` followed by `more`, times 10^-places, as one JSON literal (no leading zeros).
fn scaled(digits: &str, more: &str, places: usize) -> String {
    let all = format!("{digits}{more}");
    match all.trim_start_matches('0') {
        "" => format!("0E-{places}"),
        d => format!("{d}e-{places}"),
    }
}

/// The same number as `bound` spelt several ways, and numbers a hair either side of it.
fn spellings(bound: &Value) -> Vec<(String, Side)> {
    let text = bound.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let all = format!("{int}{frac}");
    // The significant digits (JSON allows no leading zeros): value = digits * 10^-frac.len().
    let digits = match all.trim_start_matches('0') {
        "" => "0",
        d => d,
    };
    let decimal = if frac.is_empty() {
        format!("{int}.0")
    } else {
        text.clone()
    };
    let mut out = vec![
        (text.clone(), Side::At),
        (format!("{decimal}0"), Side::At),
        (format!("{digits}e-{}", frac.len()), Side::At),
        (format!("{digits}E-{}", frac.len()), Side::At),
        (format!("0.{all}e+{}", int.len()), Side::At),
        (
            scaled(digits, "00000000000000000000", frac.len() + 20),
            Side::At,
        ),
        (format!("{decimal}0000000000000000001"), Side::Above),
        (format!("{decimal}{}1", "0".repeat(48)), Side::Above),
        (
            scaled(digits, "00000000000000000001", frac.len() + 20),
            Side::Above,
        ),
    ];
    if text == "0" {
        out.extend([
            ("-0".to_owned(), Side::At),
            ("-0.0".to_owned(), Side::At),
            ("0e400".to_owned(), Side::At),
            ("-0.00000000000000000001".to_owned(), Side::Below),
            ("-1e-400".to_owned(), Side::Below),
            ("1e-400".to_owned(), Side::Above),
        ]);
    } else {
        out.push((just_below(int, frac, 20), Side::Below));
        out.push((just_below(int, frac, 50), Side::Below));
    }
    out
}

fn put(doc: &mut Value, path: &[String], v: Value) {
    let mut cur = doc;
    for k in &path[..path.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(k.clone())
            .or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
        .unwrap()
        .insert(path[path.len() - 1].clone(), v);
}

#[test]
fn fast_path_native_and_wasm_agree_at_every_bound_in_every_spelling() {
    let fast = shipped(true, false);
    let native = shipped(false, true);
    let wasm = shipped(false, false);
    let spec = fast.loaded().data["acgs"]["constitution"]["fast_path"].clone();
    let witness = spec["allow_witness"].clone();
    let allow_action = spec["allow_actions"][0].as_str().unwrap().to_owned();
    let found = bounds(&spec);
    assert!(found.len() >= 10, "{found:?}");
    let mut served = 0;
    let mut declined = 0;
    for (path, op, bound) in &found {
        for (literal, side) in spellings(bound) {
            let mut doc = witness.clone();
            put(&mut doc, &["action".to_owned()], json!(allow_action));
            put(&mut doc, path, json!("@@number@@"));
            let raw = serde_json::to_string(&doc)
                .unwrap()
                .replace("\"@@number@@\"", &literal);
            let before = fast.stats().fast_path;
            let want = decision(&wasm, raw.as_bytes());
            assert_eq!(decision(&fast, raw.as_bytes()), want, "fast path on {raw}");
            assert_eq!(decision(&native, raw.as_bytes()), want, "native on {raw}");
            let hit = fast.stats().fast_path > before;
            // The fast path serves exactly the values within the bound, however spelt.
            let within = !matches!(
                (op.as_str(), side),
                ("gte", Side::Below) | ("lte", Side::Above)
            );
            assert_eq!(hit, within, "{op} {bound}: served {hit} for {raw}");
            if hit {
                served += 1;
            } else {
                declined += 1;
            }
        }
    }
    assert!(
        served > 20 && declined > 20,
        "served {served}, declined {declined}"
    );
}

#[test]
fn a_hair_past_a_resource_limit_is_denied_on_every_path() {
    let fast = shipped(true, false);
    let native = shipped(false, true);
    let wasm = shipped(false, false);
    let raw = |cores: &str| {
        format!(
            r#"{{"constitutional_hash":"cdd01ef066bc6cf2","action":"data.read_public",
            "context":{{"environment":{{"sandbox_enabled":true,"audit_enabled":true}},
            "agent":{{"trust_level":0.9,"requested_resources":{{"cpu_cores":{cores}}}}},
            "responsible_party":"ops@example.com"}}}}"#
        )
    };
    for (cores, allowed) in [
        ("2", true),
        ("2.0", true),
        ("2e0", true),
        ("0.2E+1", true),
        ("1.99999999999999999999", true),
        ("2.0000000000000000001", false),
        (
            "2.00000000000000000000000000000000000000000000000001",
            false,
        ),
        ("20000000000000000001e-19", false),
    ] {
        let input = raw(cores);
        for (name, e) in [("fast path", &fast), ("native", &native), ("wasm", &wasm)] {
            let d = decision(e, input.as_bytes());
            assert_eq!(
                d[0]["result"]["allow"],
                json!(allowed),
                "{name}: cpu_cores {cores}"
            );
        }
    }
}
