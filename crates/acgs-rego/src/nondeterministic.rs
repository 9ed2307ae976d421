//! The builtins whose result depends on more than their arguments: the clock, randomness, the
//! network or the process's environment. A bundle whose Wasm imports any of them gives
//! different answers to the same input, so none of its decisions is cached (L1 or L2) and
//! neither the fast path nor the native evaluator stands in for it.
//!
//! This is the one list: the engine reads it at load (as `acgs_core::nondeterministic`), the plan
//! evaluator to know which rule values it may keep across evaluations, and the Python services
//! through `acgs._acgs.NONDETERMINISTIC_BUILTINS`. It holds every builtin OPA's capabilities mark
//! `nondeterministic` (a test compares them with the pinned OPA) and the certificate checks
//! that read the clock, which OPA does not mark. OPA's Wasm compiler implements none of these
//! inside the module, so a bundle that calls one always imports it by name.

/// Each builtin and what makes it non-deterministic.
pub const NONDETERMINISTIC_BUILTINS: [(&str, &str); 13] = [
    (
        "crypto.x509.parse_and_verify_certificates",
        "verifies validity periods against the clock",
    ),
    (
        "crypto.x509.parse_and_verify_certificates_with_options",
        "verifies validity periods against the clock (unless a time is given)",
    ),
    ("http.send", "the network"),
    (
        "io.jwt.decode_verify",
        "checks exp and nbf against the clock (unless a time is given)",
    ),
    ("io.jwt.encode_sign", "randomised signatures (PS*, ES*)"),
    ("io.jwt.encode_sign_raw", "randomised signatures (PS*, ES*)"),
    (
        "json.match_schema",
        "OPA marks it: schemas may reference remote documents",
    ),
    (
        "json.verify_schema",
        "OPA marks it: schemas may reference remote documents",
    ),
    ("net.lookup_ip_addr", "DNS"),
    ("opa.runtime", "the process's environment and configuration"),
    ("rand.intn", "randomness"),
    ("time.now_ns", "the clock"),
    ("uuid.rfc4122", "randomness"),
];

/// Whether a builtin's result depends on something other than its arguments. Names of the
/// same families that OPA may add later (`time.now*`, `rand.*`, `net.lookup*`) count too.
pub fn is_nondeterministic(name: &str) -> bool {
    NONDETERMINISTIC_BUILTINS.iter().any(|(n, _)| *n == name)
        || name.starts_with("time.now")
        || name.starts_with("rand.")
        || name.starts_with("net.lookup")
}

/// The names of a module's imported builtins that are non-deterministic, in the list's order.
pub fn nondeterministic_in(names: &[String]) -> Vec<&str> {
    let mut found: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| is_nondeterministic(n))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_unique_and_recognised() {
        let names: Vec<&str> = NONDETERMINISTIC_BUILTINS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert!(names.iter().all(|n| is_nondeterministic(n)));
        for deterministic in [
            "time.parse_ns",
            "time.date",
            "uuid.parse",
            "io.jwt.decode",
            "sprintf",
        ] {
            assert!(!is_nondeterministic(deterministic), "{deterministic}");
        }
        assert!(is_nondeterministic("time.now_ms"));
        let imported = vec![
            "sprintf".to_owned(),
            "time.now_ns".to_owned(),
            "http.send".to_owned(),
        ];
        assert_eq!(
            nondeterministic_in(&imported),
            vec!["http.send", "time.now_ns"]
        );
    }
}
