//! The decision pipeline on bundles compiled by the pinned OPA: L1 cache, fast path, `decide`
//! and its fail-closed answers. `tests/fixtures/pipeline` is a small constitution of the same
//! shape as the real one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Duration;

use acgs_core::{Bundle, Engine, EngineOptions, Error, Format, InputCheck, Limits};
use serde_json::{json, Value};

fn fixture(name: &str) -> Bundle {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    Bundle::from_path(&p).unwrap()
}

fn engine(name: &str, options: EngineOptions) -> Engine {
    Engine::new(fixture(name), options).unwrap()
}

fn opts(cache: usize, fast_path: bool) -> EngineOptions {
    EngineOptions {
        cache_capacity: cache,
        fast_path,
        ..EngineOptions::default()
    }
}

fn eval(e: &Engine, ep: &str, input: &Value) -> String {
    let bytes = serde_json::to_vec(input).unwrap();
    let out = e
        .evaluate(Some(ep), Some(&bytes), InputCheck::Validate, Format::Json)
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn decide(e: &Engine, req: &Value) -> (Value, acgs_core::Decision) {
    let d = e.decide(&serde_json::to_vec(req).unwrap()).unwrap();
    (serde_json::from_slice(&d.body).unwrap(), d)
}

const HASH: &str = "cdd01ef066bc6cf2";

fn request(action: &str, trust: f64, sandbox: bool) -> Value {
    json!({
        "type": "constitutional_evaluation",
        "constitutional_hash": HASH,
        "action": action,
        "context": {
            "environment": {"sandbox_enabled": sandbox},
            "agent": {"trust_level": trust},
        },
    })
}

#[test]
fn cache_hits_on_canonically_equal_inputs_only() {
    let e = engine("pipeline.tar.gz", opts(1000, false));
    let ep = "acgs/main/decision";
    let a = eval(&e, ep, &request("report.generate", 0.85, true));
    assert_eq!(e.stats().cache.misses, 1);
    // Same document, other key order and spacing: a hit with the same bytes.
    let reordered = br#" { "context" : {"agent":{"trust_level":0.85},"environment":{"sandbox_enabled":true}},
        "action":"report.generate","type":"constitutional_evaluation","constitutional_hash":"cdd01ef066bc6cf2"} "#;
    let b = e
        .evaluate(
            Some(ep),
            Some(reordered),
            InputCheck::Validate,
            Format::Json,
        )
        .unwrap();
    assert_eq!(String::from_utf8(b).unwrap(), a);
    let s = e.stats().cache;
    assert_eq!((s.hits, s.misses, s.size), (1, 1, 1));
    // Any difference is a different entry, and gets its own, different answer.
    let c = eval(&e, ep, &request("report.generate", 0.5, true));
    assert_ne!(c, a);
    assert_eq!(e.stats().cache.misses, 2);
    // Another entrypoint on the same input is another entry.
    eval(
        &e,
        "acgs/main/allow",
        &request("report.generate", 0.85, true),
    );
    assert_eq!(e.stats().cache.size, 3);
}

#[test]
fn cache_entries_expire_and_reload_clears_them() {
    let e = engine(
        "pipeline.tar.gz",
        EngineOptions {
            cache_ttl: Some(Duration::from_millis(30)),
            ..opts(100, false)
        },
    );
    let input = request("report.generate", 0.85, true);
    eval(&e, "acgs/main/allow", &input);
    eval(&e, "acgs/main/allow", &input);
    assert_eq!(e.stats().cache.hits, 1);
    std::thread::sleep(Duration::from_millis(60));
    eval(&e, "acgs/main/allow", &input);
    assert_eq!(e.stats().cache.expirations, 1);
    e.reload(fixture("pipeline.tar.gz")).unwrap();
    assert_eq!(e.stats().cache.size, 0);
}

#[test]
fn non_deterministic_policies_are_never_cached() {
    let e = engine("clock.tar.gz", opts(1000, true));
    assert!(!e.loaded().cacheable);
    let a = eval(&e, "clock/now", &json!({}));
    std::thread::sleep(Duration::from_millis(2));
    let b = eval(&e, "clock/now", &json!({}));
    assert_ne!(a, b, "two clock readings must differ");
    let s = e.stats().cache;
    assert_eq!((s.hits, s.size), (0, 0));
}

#[test]
fn fast_path_is_derived_from_the_constitution_data() {
    let e = engine("pipeline.tar.gz", opts(0, true));
    let loaded = e.loaded();
    let fp = loaded.fast_path.as_ref().expect("fast path built");
    assert_eq!(
        (fp.deny_actions(), fp.allow_actions()),
        (2, 2),
        "{:?}",
        fp.skipped
    );
    assert_eq!(loaded.constitutional_hash.as_deref(), Some(HASH));

    let (body, d) = decide(&e, &request("data.read_public", 1.0, true));
    assert!(d.fast_path && d.allow && !d.cache_hit);
    assert_eq!(body["compliance_score"], json!(1));
    let (body, d) = decide(&e, &request("data.exfiltrate", 1.0, true));
    assert!(d.fast_path && !d.allow);
    assert_eq!(
        body["reasons"],
        json!(["action data.exfiltrate is dangerous"])
    );
    // Conditions not met: full evaluation.
    let (_, d) = decide(&e, &request("data.read_public", 0.9, true));
    assert!(!d.fast_path);
    assert_eq!(e.stats().fast_path, 2);
}

#[test]
fn decide_adds_ids_and_uses_the_cache() {
    let e = engine("pipeline.tar.gz", opts(100, true));
    let req = request("report.generate", 0.85, true);
    let (first, d1) = decide(&e, &req);
    let (second, d2) = decide(&e, &req);
    assert!(!d1.cache_hit && d2.cache_hit);
    assert_ne!(d1.decision_id, d2.decision_id);
    assert_eq!(first["bundle_digest"], json!(e.loaded().bundle_digest));
    assert_eq!(second["decision_id"], json!(d2.decision_id));
    assert_eq!(first["compliance_score"], second["compliance_score"]);
    assert!(first["evaluation_time_ms"].as_f64().unwrap() >= 0.0);
    // decide_cached answers from the cache, and says when it cannot.
    let bytes = serde_json::to_vec(&req).unwrap();
    assert!(e.decide_cached(&bytes).unwrap().unwrap().cache_hit);
    let other = serde_json::to_vec(&request("report.generate", 0.86, true)).unwrap();
    assert!(e.decide_cached(&other).unwrap().is_none());
    // An L2 layer can fill L1 by key.
    let key = e
        .cache_key(Some("acgs/main/decision"), Some(&other))
        .unwrap();
    let set = e
        .evaluate(
            Some("acgs/main/decision"),
            Some(&other),
            InputCheck::Validate,
            Format::Json,
        )
        .unwrap();
    e.cache_put(key, &set);
    assert!(e.decide_cached(&other).unwrap().unwrap().cache_hit);
}

#[test]
fn repeated_requests_hit_the_alias_with_the_same_decision() {
    let e = engine("pipeline.tar.gz", opts(100, true));
    let req = request("report.generate", 0.85, true);
    let bytes = serde_json::to_vec(&req).unwrap();
    let strip = |mut v: Value| {
        for k in ["decision_id", "evaluation_time_ms", "cache_hit"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    let run = |b: &[u8]| {
        let d = e.decide(b).unwrap();
        let v: Value = serde_json::from_slice(&d.body).unwrap();
        (v, d)
    };
    let (first, d1) = run(&bytes);
    assert!(!d1.cache_hit);
    // The second asks the canonical key and stores the alias; the third and later hit it.
    for _ in 0..3 {
        let (again, d) = run(&bytes);
        assert!(d.cache_hit && !d.fast_path && d.allow == d1.allow);
        assert_eq!(strip(again.clone()), strip(first.clone()));
        assert_eq!(again["cache_hit"], json!(true));
    }
    let s = e.stats().cache;
    // One miss (the first), and every later request counted once as a hit.
    assert_eq!((s.misses, s.hits, s.size), (1, 3, 2));
    // The same document written differently is still one canonical entry.
    let spaced = serde_json::to_vec_pretty(&req).unwrap();
    assert!(run(&spaced).1.cache_hit);
    // A bad request is refused even right after a good one with the same meaning.
    let mut wrong = req.clone();
    wrong["constitutional_hash"] = json!("0000000000000000");
    assert!(e.decide(&serde_json::to_vec(&wrong).unwrap()).is_err());
    // Reloading drops aliases with every other entry.
    e.reload(fixture("pipeline.tar.gz")).unwrap();
    assert!(!run(&bytes).1.cache_hit);
}

#[test]
fn bad_requests_are_errors_and_are_never_evaluated() {
    let e = engine("pipeline.tar.gz", opts(100, true));
    let mut req = request("data.read_public", 1.0, true);
    req["constitutional_hash"] = json!("0000000000000000");
    let err = e.decide(&serde_json::to_vec(&req).unwrap()).unwrap_err();
    assert!(
        matches!(err, Error::ConstitutionalHashMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.code(), "constitutional_hash_mismatch");
    for bad in [
        &b"{"[..],
        b"[1]",
        b"\"x\"",
        br#"{"constitutional_hash": 5}"#,
    ] {
        assert!(
            matches!(e.decide(bad), Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
    assert_eq!(e.stats().cache.misses, 0, "nothing was looked up");
}

#[test]
fn faults_in_the_policy_path_are_denies_with_reasons() {
    let e = engine(
        "pipeline.tar.gz",
        EngineOptions {
            limits: Limits {
                timeout_ms: 50,
                ..Limits::default()
            },
            ..opts(100, true)
        },
    );
    for (action, code) in [
        ("test.undefined", "evaluation_error"),
        ("test.malformed", "evaluation_error"),
        ("test.slow", "evaluation_timeout"),
    ] {
        let (body, d) = decide(&e, &request(action, 1.0, true));
        assert!(!d.allow, "{action}");
        assert_eq!(body["allow"], json!(false));
        assert_eq!(body["compliance_score"], json!(0.0));
        assert_eq!(body["error"]["code"], json!(code), "{action}: {body}");
        assert!(body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("could not be made"));
        assert_eq!(d.fault.as_ref().unwrap().0, code);
    }
    // A bundle without the decision entrypoint denies too.
    let stress = engine("stress.tar.gz", opts(100, true));
    let (body, d) = decide(&stress, &request("data.read_public", 1.0, true));
    assert!(!d.allow);
    assert_eq!(body["error"]["code"], json!("unknown_entrypoint"));
    // And the engine still decides normally afterwards.
    let (_, d) = decide(&e, &request("data.read_public", 1.0, true));
    assert!(d.allow);
}

/// Tiny deterministic generator, so failures reproduce.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

#[test]
fn fast_path_matches_full_evaluation_on_generated_requests() {
    let fast = engine("pipeline.tar.gz", opts(0, true));
    let full = engine("pipeline.tar.gz", opts(0, false));
    let mut g = Gen(0x5eed);
    let actions = [
        "data.read_public",
        "report.generate",
        "system.execute_shell",
        "data.exfiltrate",
        "data.write",
        "other",
    ];
    let trusts = [
        json!(1),
        json!(1.0),
        json!(0.99),
        json!(2),
        json!(-1),
        json!("1"),
        json!(null),
    ];
    let mut served = 0;
    for _ in 0..20_000 {
        let mut req = json!({"action": *g.pick(&actions)});
        if g.next() % 8 != 0 {
            req["constitutional_hash"] = json!(*g.pick(&[HASH, HASH, HASH, "other"]));
        }
        if g.next() % 8 != 0 {
            req["context"] = json!({
                "environment": {"sandbox_enabled": g.pick(&[json!(true), json!(false), json!(1)]).clone()},
                "agent": {"trust_level": g.pick(&trusts).clone()},
            });
        }
        if req["constitutional_hash"] == json!("other") {
            continue; // refused before evaluation, checked elsewhere
        }
        let bytes = serde_json::to_vec(&req).unwrap();
        let d = fast.decide(&bytes).unwrap();
        served += usize::from(d.fast_path);
        let mut got: Value = serde_json::from_slice(&d.body).unwrap();
        let want = full
            .evaluate(
                Some("acgs/main/decision"),
                Some(&bytes),
                InputCheck::Validate,
                Format::Json,
            )
            .unwrap();
        let want: Value = serde_json::from_slice(&want).unwrap();
        for k in [
            "decision_id",
            "bundle_digest",
            "cache_hit",
            "fast_path",
            "evaluation_time_ms",
        ] {
            got.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(got, want[0]["result"], "request {req}");
    }
    assert!(
        served > 3_000,
        "the generator must exercise the fast path ({served})"
    );
}

/// OPA declares a two-page memory even when its data segments need more; the shipped
/// constitution is such a module.
#[test]
fn the_shipped_constitution_loads_and_builds_its_fast_path() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../python/acgs/bundles/constitution.tar.gz");
    let e = Engine::new(Bundle::from_path(&p).unwrap(), EngineOptions::default()).unwrap();
    let loaded = e.loaded();
    assert_eq!(loaded.constitutional_hash.as_deref(), Some(HASH));
    let fp = loaded.fast_path.as_ref().expect("fast path");
    assert!(fp.skipped.is_empty(), "{:?}", fp.skipped);
    assert!(fp.deny_actions() > 0 && fp.allow_actions() > 0);
}

fn shipped_constitution() -> Bundle {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../python/acgs/bundles/constitution.tar.gz");
    Bundle::from_path(&p).unwrap()
}

/// The native evaluator applies to the shipped bundle only while its rules are the ones it
/// implements: when main.rego or lib.rego change, this fails until native/ is brought in line
/// (and its digests updated) or the change is confirmed to need no native change.
#[test]
fn the_shipped_constitution_is_evaluated_natively() {
    let e = Engine::new(shipped_constitution(), opts(0, false)).unwrap();
    let loaded = e.loaded();
    assert!(
        loaded.native.is_some(),
        "native evaluator off: {:?}",
        loaded.native_error
    );
    let seed = json!({
        "type": "constitutional_evaluation",
        "constitutional_hash": HASH,
        "action": "data.read_public",
        "context": {
            "environment": {"sandbox_enabled": true, "audit_enabled": true},
            "agent": {"trust_level": 0.9, "requested_resources": {"cpu_cores": 1, "network_mbps": 100}},
            "responsible_party": "ops@example.com",
            "explanation": "Reading public data for a daily report",
        },
    });
    let (got, d) = decide(&e, &seed);
    assert!(!d.fast_path && !d.cache_hit);
    assert_eq!(e.stats().native, 1);
    let wasm = Engine::new(
        shipped_constitution(),
        EngineOptions {
            native: false,
            ..opts(0, false)
        },
    )
    .unwrap();
    assert!(wasm.loaded().native.is_none());
    let (want, _) = decide(&wasm, &seed);
    for k in [
        "allow",
        "compliance_score",
        "reasons",
        "conditions",
        "evaluation_details",
        "constitutional_hash",
    ] {
        assert_eq!(got[k], want[k], "{k}");
    }
    assert_eq!(wasm.stats().native, 0);
}

/// A bundle whose data the native evaluator cannot read is evaluated by its Wasm, and says why.
#[test]
fn native_evaluator_stays_off_for_other_rules() {
    let e = engine("pipeline.tar.gz", opts(0, false));
    let why = e.loaded().native_error.clone().unwrap();
    assert!(
        why.contains("differ from the ones the native evaluator implements"),
        "{why}"
    );
}

/// `decide` admits the request on the tree it parses: on every evaluator (native, fast path,
/// Wasm, L1 and its alias) the client's `trusted` (in any spelling) is dropped, the service's
/// facts take its place, and the answer is the Wasm's on the admitted input. The alias of a
/// repeated request covers the facts too: the same bytes with other facts are decided anew.
#[test]
fn facts_reach_every_evaluator_and_are_part_of_the_alias() {
    let seed = r#"{"type":"constitutional_evaluation","constitutional_hash":"cdd01ef066bc6cf2","action":"data.read_public","context":{"environment":{"sandbox_enabled":true,"audit_enabled":true},"agent":{"trust_level":0.9,"requested_resources":{"cpu_cores":2,"network_mbps":10}},"responsible_party":"user@example.com","explanation":"Reading public dataset for analysis"},"trus\u0074ed":{"request_count_1m":0}}"#;
    let within: &[u8] = br#"{"principal":{"id":"a","via":"address","roles":[]}}"#;
    let over: &[u8] =
        br#"{"principal":{"id":"a","via":"address","roles":[]},"request_count_1m":101}"#;
    let reference = Engine::new(
        shipped_constitution(),
        EngineOptions {
            native: false,
            ..opts(0, false)
        },
    )
    .unwrap();
    let wasm_answer = |facts: Option<&[u8]>| -> Value {
        let admitted = acgs_core::trusted::admit(seed.as_bytes(), facts).unwrap();
        let set = reference
            .evaluate(
                Some("acgs/main/decision"),
                Some(&admitted),
                InputCheck::Validate,
                Format::Json,
            )
            .unwrap();
        let set: Value = serde_json::from_slice(&set).unwrap();
        set[0]["result"].clone()
    };
    let (allowed, denied) = (wasm_answer(Some(within)), wasm_answer(Some(over)));
    assert_eq!(allowed["allow"], json!(true));
    assert_eq!(denied["allow"], json!(false));
    assert!(denied["reasons"].as_array().unwrap().contains(&json!(
        "rate limit exceeded: 101 requests in 60 s, limit 100"
    )));
    for (cache, fast_path, native) in [
        (0, false, true),
        (0, false, false),
        (0, true, true),
        (100, false, true),
        (100, true, false),
    ] {
        let e = Engine::new(
            shipped_constitution(),
            EngineOptions {
                native,
                ..opts(cache, fast_path)
            },
        )
        .unwrap();
        let what = format!("cache {cache}, fast path {fast_path}, native {native}");
        let ask = |facts: Option<&[u8]>| -> Value {
            let d = e.decide_trusted(seed.as_bytes(), facts).unwrap();
            serde_json::from_slice(&d.body).unwrap()
        };
        // Asked four times: the canonical entry, then its alias.
        for _ in 0..4 {
            let got = ask(Some(within));
            for k in ["allow", "compliance_score", "reasons", "evaluation_details"] {
                assert_eq!(got[k], allowed[k], "{what}: {k}");
            }
        }
        for _ in 0..2 {
            let got = ask(Some(over));
            for k in ["allow", "compliance_score", "reasons", "evaluation_details"] {
                assert_eq!(got[k], denied[k], "{what}: {k}");
            }
        }
        // Without facts the client's own counter is still dropped.
        assert_eq!(ask(None)["allow"], wasm_answer(None)["allow"], "{what}");
    }
}
