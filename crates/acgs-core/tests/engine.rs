//! End-to-end tests of the Wasm host on bundles compiled by the pinned OPA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;

use acgs_core::{Bundle, Engine, EngineOptions, Error, Format, InputCheck, Limits};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> Engine {
    let b = Bundle::from_path(&repo().join("bundles/example.tar.gz")).unwrap();
    Engine::new(b, EngineOptions::default()).unwrap()
}

fn stress(limits: Limits) -> Engine {
    let b = Bundle::from_path(&repo().join("tests/fixtures/stress.tar.gz")).unwrap();
    Engine::new(
        b,
        EngineOptions {
            limits,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

fn eval(e: &Engine, ep: &str, input: &str) -> Result<String, Error> {
    e.evaluate(
        Some(ep),
        Some(input.as_bytes()),
        InputCheck::Validate,
        Format::Json,
    )
    .map(|b| String::from_utf8(b).unwrap())
}

const GOOD: &str = r#"{"action":"data.read_public","context":{"environment":{"sandbox_enabled":true},"agent":{"trust_level":0.9}}}"#;

#[test]
fn evaluates_the_real_policy() {
    let e = example();
    assert_eq!(
        eval(&e, "acgs/example/allow", GOOD).unwrap(),
        r#"[{"result":true}]"#
    );
    let low = GOOD.replace("0.9", "0.5");
    let out = eval(&e, "acgs/example/decision", &low).unwrap();
    assert!(out.contains(r#""allow":false"#), "{out}");
    assert!(
        out.contains("trust level 0.5 is below the minimum 0.8"),
        "{out}"
    );
    // Entrypoint names are accepted in dotted form too, and the default is the first.
    assert_eq!(
        eval(&e, "data.acgs.example.allow", GOOD).unwrap(),
        r#"[{"result":true}]"#
    );
    let default = e
        .evaluate(
            None,
            Some(GOOD.as_bytes()),
            InputCheck::Validate,
            Format::Json,
        )
        .unwrap();
    assert_eq!(default, br#"[{"result":true}]"#);
}

#[test]
fn undefined_is_an_empty_result_set() {
    let e = stress(Limits::default());
    assert_eq!(eval(&e, "stress/both", r#"{"name": 3}"#).unwrap(), "[]");
    let out = e
        .evaluate(
            Some("stress/both"),
            Some(br#"{"name":"ab"}"#),
            InputCheck::Validate,
            Format::Rego,
        )
        .unwrap();
    // In Rego syntax the result set is itself a set, and inner sets survive.
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(r#"{{"result": {"#) && text.ends_with("}}}"),
        "{text}"
    );
    assert!(
        text.contains(r#""set": {1, 2, 3}"#) && text.contains(r#""upper": "AB""#),
        "{text}"
    );
}

#[test]
fn bad_input_and_unknown_entrypoint_are_specific_errors() {
    let e = example();
    assert!(matches!(
        eval(&e, "acgs/example/allow", "{not json"),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        eval(&e, "nope/nothing", GOOD),
        Err(Error::UnknownEntrypoint(_))
    ));
    // The engine still works afterwards.
    assert_eq!(
        eval(&e, "acgs/example/allow", GOOD).unwrap(),
        r#"[{"result":true}]"#
    );
}

#[test]
fn deadline_and_memory_cap_give_specific_errors_and_the_engine_recovers() {
    let e = stress(Limits {
        timeout_ms: 50,
        memory_bytes: 64 * 1024 * 1024,
    });
    let t = eval(&e, "stress/spin", &spin_input(2000));
    assert!(matches!(t, Err(Error::Timeout(50))), "{t:?}");
    assert_eq!(
        eval(&e, "stress/spin", &spin_input(10)).unwrap(),
        r#"[{"result":10}]"#
    );

    let e = stress(Limits {
        timeout_ms: 60_000,
        memory_bytes: 64 * 1024 * 1024,
    });
    let m = eval(&e, "stress/hog", r#"{"n": 100000000}"#);
    assert!(matches!(m, Err(Error::MemoryLimit(_))), "{m:?}");
    assert_eq!(
        eval(&e, "stress/hog", r#"{"n": 2}"#).unwrap(),
        r#"[{"result":2}]"#
    );
}

/// `{"items": [0, 1, ..., n-1], "stop": -1}`: stress/spin visits n^3 triples.
fn spin_input(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(r#"{{"items":[{}],"stop":-1}}"#, items.join(","))
}

#[test]
fn the_deadline_policy_allocates_nothing_per_step() {
    // 300^3 = 27 million steps under a cap of 8 MiB and no deadline worth the name: a loop that
    // allocated even a few bytes per step would exhaust the cap, so the deadline test above can
    // only ever hit the deadline, however fast or slow the machine.
    let e = stress(Limits {
        timeout_ms: 600_000,
        memory_bytes: 8 * 1024 * 1024,
    });
    assert_eq!(
        eval(&e, "stress/spin", &spin_input(300)).unwrap(),
        r#"[{"result":300}]"#
    );
}

#[test]
fn input_larger_than_the_memory_cap_is_refused() {
    let e = stress(Limits {
        timeout_ms: 1000,
        memory_bytes: 4 * 1024 * 1024,
    });
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(8 * 1024 * 1024));
    assert!(matches!(
        eval(&e, "stress/echo", &big),
        Err(Error::MemoryLimit(_))
    ));
    assert_eq!(
        eval(&e, "stress/echo", r#"{"a":1}"#).unwrap(),
        r#"[{"result":{"a":1}}]"#
    );
}

#[test]
fn memory_stays_flat_over_many_evaluations() {
    let e = example();
    for _ in 0..1000 {
        eval(&e, "acgs/example/decision", GOOD).unwrap();
    }
    let before = e.loaded().idle_memory_bytes();
    for _ in 0..20_000 {
        eval(&e, "acgs/example/decision", GOOD).unwrap();
    }
    assert_eq!(e.loaded().idle_memory_bytes(), before);
}

#[test]
fn evaluate_many_keeps_order_across_threads() {
    let e = example();
    let inputs: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            GOOD.replace("0.9", if i % 2 == 0 { "0.9" } else { "0.1" })
                .into_bytes()
        })
        .collect();
    let out = e
        .evaluate_many(
            Some("acgs/example/allow"),
            &inputs,
            InputCheck::Validate,
            Format::Json,
            2,
        )
        .unwrap();
    for (i, r) in out.iter().enumerate() {
        let want = if i % 2 == 0 { "true" } else { "false" };
        assert_eq!(
            String::from_utf8(r.as_ref().unwrap().clone()).unwrap(),
            format!(r#"[{{"result":{want}}}]"#)
        );
    }
}

#[test]
fn reload_swaps_atomically_and_keeps_the_old_bundle_on_failure() {
    let e = Arc::new(example());
    let old_digest = e.loaded().bundle_digest.clone();
    let held = e.loaded();
    let stress_bundle = Bundle::from_path(&repo().join("tests/fixtures/stress.tar.gz")).unwrap();
    e.reload(stress_bundle).unwrap();
    assert_ne!(e.loaded().bundle_digest, old_digest);
    // A caller that took the old bundle before the swap still evaluates against it.
    assert_eq!(held.bundle_digest, old_digest);
    assert!(matches!(
        eval(&e, "acgs/example/allow", GOOD),
        Err(Error::UnknownEntrypoint(_))
    ));
    // A broken bundle is refused and the current one stays.
    assert!(e
        .reload(Bundle::from_bytes(b"\0asm\x01\0\0\0").unwrap())
        .is_err());
    assert_eq!(eval(&e, "stress/echo", "1").unwrap(), r#"[{"result":1}]"#);
}

#[test]
fn context_api_path_matches_fast_path() {
    let b = Bundle::from_path(&repo().join("bundles/example.tar.gz")).unwrap();
    let (policy, mut fast) =
        acgs_core::wasm::Policy::compile(&b.wasm, &b.data, Limits::default()).unwrap();
    let mut slow = acgs_core::wasm::Instance::new(&policy).unwrap();
    slow.use_context_api();
    let ep = policy.entrypoints()["acgs/example/decision"];
    for input in [GOOD.to_owned(), GOOD.replace("0.9", "0.2")] {
        let a = fast.eval(ep, Some(input.as_bytes()), Format::Json).unwrap();
        let b = slow.eval(ep, Some(input.as_bytes()), Format::Json).unwrap();
        assert_eq!(a, b);
    }
    assert!(policy.abi_minor() >= 2);
}

#[test]
fn bundle_from_directory_equals_bundle_from_archive() {
    let dir = std::env::temp_dir().join(format!("acgs-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = std::fs::read(repo().join("bundles/example.tar.gz")).unwrap();
    let gz = flate2_read(&raw);
    let mut ar = tar::Archive::new(gz.as_slice());
    ar.unpack(&dir).unwrap();
    let a = Bundle::from_path(&dir).unwrap();
    let b = Bundle::from_bytes(&raw).unwrap();
    assert_eq!(a.digest, b.digest);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn flate2_read(raw: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn no_deadline_engine_evaluates_the_same() {
    let b = Bundle::from_path(&repo().join("bundles/example.tar.gz")).unwrap();
    let untimed = Engine::new(
        b,
        EngineOptions {
            limits: Limits {
                timeout_ms: 0,
                ..Limits::default()
            },
            cache_capacity: 0,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let timed = example();
    for input in [GOOD.to_owned(), GOOD.replace("0.9", "0.5")] {
        assert_eq!(
            eval(&untimed, "acgs/example/decision", &input).unwrap(),
            eval(&timed, "acgs/example/decision", &input).unwrap()
        );
    }
}

/// A request is one L1 look-up in the statistics: a cache-only probe counts the miss, the
/// evaluation after it (`evaluate_probed`) does not count its own look-up again.
#[test]
fn a_probe_and_its_evaluation_count_one_lookup() {
    let e = example();
    let input = Some(GOOD.as_bytes());
    let ep = Some("acgs/example/allow");
    assert!(e.evaluate_cached(ep, input).unwrap().is_none());
    let out = e
        .evaluate_probed(ep, input, InputCheck::Validate, Format::Json)
        .unwrap();
    assert_eq!(out, br#"[{"result":true}]"#);
    let s = e.stats().cache;
    assert_eq!((s.hits, s.misses), (0, 1));
    // The next request hits in its probe.
    assert!(e.evaluate_cached(ep, input).unwrap().is_some());
    let s = e.stats().cache;
    assert_eq!((s.hits, s.misses), (1, 1));
    // Without a probe, an evaluation counts its own look-up.
    let low = GOOD.replace("0.9", "0.5");
    eval(&e, "acgs/example/allow", &low).unwrap();
    let s = e.stats().cache;
    assert_eq!((s.hits, s.misses), (1, 2));
}
