//! The plan evaluator against OPA's Wasm of the same bundle, on every entrypoint of the shipped
//! bundles: seed inputs from the Python suite's generators (tests/corpus/), each multiplied by
//! mutations (numbers respelt and moved to boundaries, fields dropped and retyped, whole inputs
//! replaced by scalars). Result sets are compared by value; a conflict on both sides agrees.
//!
//! Each entrypoint gets at least `ACGS_PLAN_INPUTS` distinct inputs (default 100,000; a quarter
//! of that on the edited constitution): one variant of every seed per round, until that many
//! different texts have been compared.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use acgs_core::wasm::{Format, Instance, Limits as WasmLimits, Policy};
use acgs_core::Bundle;
use acgs_plan::{Limits, Num, Plan, Val};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The same number written another way (exactly the same value unless `shift`).
fn respell(rng: &mut Rng, tok: &str) -> String {
    let (neg, digits) = tok.strip_prefix('-').map_or((false, tok), |d| (true, d));
    let sign = if neg { "-" } else { "" };
    let plain = !digits.contains(['e', 'E']);
    match rng.below(9) {
        0 if plain && digits.contains('.') => format!("{tok}000"),
        1 if plain && !digits.contains('.') => format!("{tok}.0"),
        2 if plain => {
            let places = digits.split_once('.').map_or(0, |(_, f)| f.len());
            let mantissa = digits.replace('.', "");
            let mantissa = match mantissa.trim_start_matches('0') {
                "" => "0",
                m => m,
            };
            format!("{sign}{mantissa}E-{places}")
        }
        3 if plain => format!("{sign}{digits}e0"),
        4 if plain => format!("{sign}0{}e+1", {
            // 0.<digits>e+1 needs the point moved: write digits/10 instead.
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            if int.len() == 1 {
                format!(".{int}{frac}")
            } else {
                return tok.to_owned();
            }
        }),
        // Values next to the original: the boundaries of every comparison.
        5 if plain && digits.contains('.') => format!("{tok}0000000000000000000001"),
        6 if plain => format!("{sign}{}", {
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            if frac.is_empty() {
                format!("{int}.000000000000000001")
            } else {
                return format!("{tok}9");
            }
        }),
        _ => tok.to_owned(),
    }
}

/// Rewrites every number token outside strings.
fn respell_all(rng: &mut Rng, text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + ch_len]);
            if c == b'\\' {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += ch_len;
            continue;
        }
        if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
            continue;
        }
        if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let tok = &text[start..i];
            out.push_str(&if rng.chance(0.6) {
                respell(rng, tok)
            } else {
                tok.to_owned()
            });
            continue;
        }
        out.push(c as char);
        i += 1;
    }
    out
}

fn odd_value(rng: &mut Rng) -> Val {
    let texts = [
        "null",
        "true",
        "false",
        "\"\"",
        "\"x\"",
        "\"0.9\"",
        "0",
        "-1",
        "1",
        "0.5",
        "1e400",
        "-1e-400",
        "12345678901234567890123",
        "0.30000000000000000001",
        "[]",
        "{}",
        "[1,\"a\"]",
        "{\"k\":\"v\"}",
        "99999999999999999999999999999999999999",
        "1.5e308",
        "\"İ\"",
    ];
    Val::parse(texts[rng.below(texts.len())].as_bytes()).unwrap()
}

/// Drops or retypes one field somewhere in `v`.
fn mutate(rng: &mut Rng, v: &mut Val, depth: usize) {
    match v {
        Val::Obj(o) if !o.is_empty() => {
            let m = Arc::make_mut(o);
            let key = m.keys().nth(rng.below(m.len())).cloned().unwrap();
            match rng.below(4) {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    m.insert(key, odd_value(rng));
                }
                _ if depth < 6 => mutate(rng, m.get_mut(&key).unwrap(), depth + 1),
                _ => {
                    m.insert(key, odd_value(rng));
                }
            }
        }
        Val::Arr(a) if !a.is_empty() => {
            let m = Arc::make_mut(a);
            let i = rng.below(m.len());
            if rng.chance(0.3) {
                m.remove(i);
            } else if depth < 6 && rng.chance(0.5) {
                mutate(rng, &mut m[i], depth + 1);
            } else {
                m[i] = odd_value(rng);
            }
        }
        _ => *v = odd_value(rng),
    }
}

/// A 64-bit hash of an input's text, to count distinct inputs without keeping them.
fn fingerprint(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// One variant of `seed`: mutated, respelt, or (rarely) replaced by a scalar.
fn variant(rng: &mut Rng, seed: &str) -> String {
    {
        let mut text = seed.to_owned();
        if rng.chance(0.6) {
            if let Ok(mut v) = Val::parse(text.as_bytes()) {
                for _ in 0..=rng.below(3) {
                    mutate(rng, &mut v, 0);
                }
                text = v.to_json();
            }
        }
        if rng.chance(0.5) {
            text = respell_all(rng, &text);
        }
        if rng.chance(0.01) {
            text = odd_value(rng).to_json();
        }
        text
    }
}

struct Sides {
    plan: Plan,
    data: Val,
    policy: Arc<Policy>,
    instance: Instance,
}

fn load(bundle: &str) -> Sides {
    let bundle = Bundle::from_path(&root().join(bundle)).unwrap();
    let plan = Plan::from_json(bundle.plan_json().expect("bundle carries plan.json")).unwrap();
    let data = Val::parse(serde_json::to_string(&bundle.data).unwrap().as_bytes()).unwrap();
    let (policy, instance) =
        Policy::compile(&bundle.wasm, &bundle.data, WasmLimits::default()).unwrap();
    Sides {
        plan,
        data,
        policy,
        instance,
    }
}

/// Result set, or the error's text.
type Outcome = Result<BTreeSet<Val>, String>;

fn wasm_eval(s: &mut Sides, entrypoint: &str, input: &str) -> Outcome {
    let id = *s.policy.entrypoints().get(entrypoint).unwrap();
    if s.instance.is_poisoned() {
        s.instance = Instance::new(&s.policy).unwrap();
    }
    let out = s
        .instance
        .eval(id, Some(input.as_bytes()), Format::Rego)
        .map_err(|e| e.to_string())?;
    match Val::parse(&out).map_err(|e| format!("bad result: {e}"))? {
        Val::Arr(a) => Ok(a.iter().cloned().collect()),
        Val::Set(s) => Ok((*s).clone()),
        other => Err(format!("result set is {}", other.type_name())),
    }
}

fn plan_eval(s: &Sides, entrypoint: &str, input: &str) -> Outcome {
    let ep = s.plan.entrypoint(entrypoint).unwrap();
    let input = Val::parse(input.as_bytes()).map_err(|e| format!("bad input: {e}"))?;
    s.plan
        .eval(ep, Some(&input), &s.data, Limits::default())
        .map_err(|e| e.to_string())
}

fn agree(a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.contains("conflict") == y.contains("conflict"),
        _ => false,
    }
}

fn corpus(entrypoint: &str) -> Vec<String> {
    let name = entrypoint.replace('/', "_") + ".jsonl";
    let text =
        std::fs::read_to_string(root().join("crates/acgs-plan/tests/corpus").join(name)).unwrap();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Distinct inputs per entrypoint: `ACGS_PLAN_INPUTS` (default 100,000) divided by `share`.
fn inputs(share: usize) -> usize {
    let all: usize = std::env::var("ACGS_PLAN_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    all / share.max(1)
}

fn run(bundle: &str, cases: &[(&str, &str)], want_inputs: usize) {
    let mut sides = load(bundle);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut report = Vec::new();
    let mut first = Vec::new();
    for (entrypoint, corpus_of) in cases {
        let (mut total, mut mismatched, mut defined) = (0, 0, 0);
        let seeds = corpus(corpus_of);
        let mut seen: HashSet<u64> = HashSet::new();
        // Round 0 compares the seeds themselves; each later round one variant of every seed.
        // A variant already compared is not counted again; the rounds are capped should the
        // variants of a small corpus run dry.
        let mut round = 0;
        while seen.len() < want_inputs && round < 4 * want_inputs / seeds.len().max(1) + 2 {
            for seed in &seeds {
                let input = if round == 0 {
                    seed.clone()
                } else {
                    variant(&mut rng, seed)
                };
                if !seen.insert(fingerprint(&input)) {
                    continue;
                }
                let want = wasm_eval(&mut sides, entrypoint, &input);
                let got = plan_eval(&sides, entrypoint, &input);
                total += 1;
                defined += usize::from(matches!(&want, Ok(s) if !s.is_empty()));
                if !agree(&want, &got) {
                    mismatched += 1;
                    if first.len() < 5 {
                        let show = |o: &Outcome| match o {
                            Ok(s) => s.iter().map(Val::to_rego).collect::<Vec<_>>().join(" | "),
                            Err(e) => format!("error: {e}"),
                        };
                        first.push(format!(
                            "{entrypoint}\n  input: {input}\n  wasm:  {}\n  plan:  {}",
                            show(&want),
                            show(&got)
                        ));
                    }
                }
            }
            round += 1;
        }
        report.push(format!(
            "{entrypoint}: {total} distinct inputs ({defined} defined), {mismatched} mismatches"
        ));
        assert!(
            total >= want_inputs,
            "{entrypoint}: only {total} distinct inputs of {want_inputs}"
        );
    }
    println!("{bundle}:\n  {}", report.join("\n  "));
    let bad: usize = report
        .iter()
        .filter(|r| !r.ends_with(" 0 mismatches"))
        .count();
    assert!(bad == 0, "{}\n{}", report.join("\n"), first.join("\n"));
}

const CONSTITUTION: &[(&str, &str)] = &[
    ("acgs/main/decision", "acgs/main/decision"),
    ("acgs/main/allow", "acgs/main/decision"),
    ("acgs/evolution/decision", "acgs/evolution/decision"),
    ("acgs/sandbox/decision", "acgs/sandbox/decision"),
    ("acgs/fast_path/route", "acgs/fast_path/route"),
    ("acgs/tools/decision", "acgs/tools/decision"),
];

#[test]
fn constitution_plan_equals_its_wasm() {
    run("bundles/constitution.tar.gz", CONSTITUTION, inputs(1));
}

/// The constitution edited in several places (rules added and removed, a score reweighted, a
/// helper and data thresholds changed: tests/fixtures/edited/edit.py), as an evolution would.
#[test]
fn edited_constitution_plan_equals_its_wasm() {
    run(
        "tests/fixtures/constitution-edited.tar.gz",
        CONSTITUTION,
        inputs(4),
    );
}

#[test]
fn example_plan_equals_its_wasm() {
    run(
        "bundles/example.tar.gz",
        &[
            ("acgs/example/allow", "acgs/main/decision"),
            ("acgs/example/decision", "acgs/main/decision"),
        ],
        inputs(1),
    );
}

#[test]
fn numbers_compare_exactly_across_spellings() {
    let n = |t: &str| Num::parse(t).unwrap();
    assert_eq!(n("1.50"), n("15E-1"));
    assert_eq!(n("1e400"), n("10e399"));
    assert!(n("0.30000000000000000001") > n("0.3"));
    assert!(n("12345678901234567890123456789012345678901") > n("1e40"));
    let big = n("0.065229996060497810000000000000000000001");
    assert_eq!(big.plus(&n("0")).unwrap(), big);
    assert!(matches!(big, Num::Big(_)));
    assert_eq!(std::mem::size_of::<Val>(), 24);
}
