//! The native evaluator: `acgs/main/decision` of the shipped constitution, evaluated in Rust.
//!
//! The constitution is Rego (`policies/acgs/main.rego` and `lib.rego`) compiled to Wasm, and
//! that stays the reference. Evaluating the compiled module costs a few hundred microseconds
//! per decision, almost all of it in OPA's Wasm runtime (value allocation, sets, decimal
//! numbers), so this module implements the same rules directly over the parsed request. It
//! reads every list, weight, limit and threshold from the bundle's data, like the Rego does;
//! the rules themselves are those of the two modules whose SHA-256 digests are below.
//!
//! It is used only when it is known to agree with the Wasm:
//! - the bundle carries exactly these `main.rego` and `lib.rego` sources (a bundle built from
//!   edited rules is evaluated by its Wasm alone);
//! - the constitution's data has the types these rules expect;
//! - at load, a set of probe requests covering every rule gives the same decision here and in
//!   the Wasm (compared as JSON values);
//! - `tests/test_native.py` compares both on 100,000 generated requests in the test command.
//!
//! Whatever it cannot represent exactly (numbers beyond 36 digits or with huge exponents,
//! requests with another or a non-string constitutional hash, non-object inputs) it leaves to
//! the Wasm by answering `None`.

use std::borrow::Cow;
use std::collections::BTreeSet;

use acgs_rego::builtins::{BuiltinFn, Context};
use acgs_rego::Value as Rego;
use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value as Data;

use crate::canon::Json;
pub use acgs_rego::decimal::Dec;

/// SHA-256 of `policies/acgs/main.rego` as `opa build` writes it into the bundle (formatted,
/// without comments): the rules this module implements.
pub const MAIN_REGO_SHA256: &str =
    "0ac103f4155f2f891510b90df048dbe39b0eaf2ada8b5141827de2998215f932";
/// SHA-256 of `policies/acgs/lib.rego` as it is in the bundle.
pub const LIB_REGO_SHA256: &str =
    "466a7f4a19ee9da898f423144d7f0406626d64793abecfb9475bb34099a2e609";

/// The objects a field can sit in: a path whose every step is an object ends in one of these.
#[derive(Clone, Copy)]
enum Parent {
    Input,
    Context,
    Environment,
    Agent,
    Trusted,
    /// `trusted.agent`: the caller's registry record, filled in by the service.
    Registered,
}

/// Fields with a declared JSON type (`typed_fields` in main.rego): parent, key, dotted path,
/// type.
const TYPED_FIELDS: [(Parent, &str, &str, &str); 20] = [
    (Parent::Input, "context", "context", "object"),
    (
        Parent::Context,
        "environment",
        "context.environment",
        "object",
    ),
    (
        Parent::Environment,
        "sandbox_enabled",
        "context.environment.sandbox_enabled",
        "boolean",
    ),
    (
        Parent::Environment,
        "audit_enabled",
        "context.environment.audit_enabled",
        "boolean",
    ),
    (Parent::Context, "agent", "context.agent", "object"),
    (
        Parent::Agent,
        "trust_level",
        "context.agent.trust_level",
        "number",
    ),
    (
        Parent::Agent,
        "requested_resources",
        "context.agent.requested_resources",
        "object",
    ),
    (
        Parent::Context,
        "responsible_party",
        "context.responsible_party",
        "string",
    ),
    (
        Parent::Context,
        "explanation",
        "context.explanation",
        "string",
    ),
    (Parent::Context, "code", "context.code", "string"),
    (
        Parent::Context,
        "benefit_assessment",
        "context.benefit_assessment",
        "number",
    ),
    (
        Parent::Context,
        "harm_risk_assessment",
        "context.harm_risk_assessment",
        "number",
    ),
    (
        Parent::Context,
        "fairness_assessment",
        "context.fairness_assessment",
        "number",
    ),
    (
        Parent::Context,
        "overrides_user_preference",
        "context.overrides_user_preference",
        "boolean",
    ),
    (
        Parent::Context,
        "user_consent",
        "context.user_consent",
        "boolean",
    ),
    (
        Parent::Context,
        "affects_protected_groups",
        "context.affects_protected_groups",
        "boolean",
    ),
    (Parent::Input, "trusted", "trusted", "object"),
    (
        Parent::Trusted,
        "request_count_1m",
        "trusted.request_count_1m",
        "number",
    ),
    (Parent::Trusted, "agent", "trusted.agent", "object"),
    (
        Parent::Registered,
        "trust_level",
        "trusted.agent.trust_level",
        "number",
    ),
];

/// Numeric fields that must lie in [0, 1] (`unit_fields`): parent, key, dotted path.
const UNIT_FIELDS: [(Parent, &str, &str); 5] = [
    (Parent::Agent, "trust_level", "context.agent.trust_level"),
    (
        Parent::Context,
        "benefit_assessment",
        "context.benefit_assessment",
    ),
    (
        Parent::Context,
        "harm_risk_assessment",
        "context.harm_risk_assessment",
    ),
    (
        Parent::Context,
        "fairness_assessment",
        "context.fairness_assessment",
    ),
    (
        Parent::Registered,
        "trust_level",
        "trusted.agent.trust_level",
    ),
];

/// The principles main.rego scores, by name.
const PRINCIPLES: [&str; 5] = [
    "autonomy",
    "beneficence",
    "non_maleficence",
    "fairness",
    "accountability",
];

/// A number from the data: its value and the text the Wasm sees (serde's serialisation).
#[derive(Debug, Clone)]
struct Num {
    dec: Dec,
    text: String,
}

impl Num {
    fn rego(&self) -> Rego {
        number_value(&self.text)
    }
}

/// Why the native evaluator is not used for a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeError(pub String);

/// The constitution's data, checked and converted once at load.
#[derive(Debug)]
pub struct Native {
    hash: String,
    dangerous: Vec<String>,
    safe: Vec<String>,
    explanation_required: Vec<String>,
    /// The ordinary actions of the catalogue (`actions`); safe and explanation-required
    /// actions are known too.
    actions: Vec<String>,
    /// `action_grammar`: the characters a canonical name may hold (with their ASCII members as
    /// a table, looked up per character), and its maximum length.
    grammar_chars: String,
    grammar_ascii: [bool; 128],
    grammar_max: Num,
    request_types: Vec<String>,
    request_types_joined: String,
    /// Critical text patterns (distinct), found in one pass by `text_search`.
    text_patterns: Vec<String>,
    text_search: AhoCorasick,
    /// Critical action patterns: the pattern and the indices of its category and its name
    /// among `action_parts`, found in one pass by `parts_search`.
    action_patterns: Vec<(String, usize, usize)>,
    action_parts: Vec<String>,
    parts_search: AhoCorasick,
    /// `(name, limit)` sorted by name.
    limits: Vec<(String, Num)>,
    known_resources: String,
    t_allow: Num,
    t_trust: Num,
    t_constitutional: Num,
    t_explanation_chars: Num,
    t_max_harm: Num,
    t_min_benefit: Num,
    t_min_fairness: Num,
    /// `scoring.scale` as a power of ten.
    scale_places: u32,
    scale: Dec,
    w_safety: Dec,
    w_constitutional: Dec,
    w_resources: Dec,
    w_transparency: Dec,
    s_not_dangerous: Dec,
    s_sandboxed: Dec,
    s_rate: Dec,
    tr_base: Dec,
    tr_explanation: Dec,
    tr_audit: Dec,
    acc_audit: Dec,
    acc_party: Dec,
    aut_respected: Dec,
    aut_consent: Dec,
    aut_no_consent: Dec,
    default_benefit: Num,
    default_harm: Num,
    default_fairness: Num,
    /// Principles with a positive weight, sorted, with their weights.
    principles: Vec<(String, Dec)>,
    weight_sum: Dec,
    obligations_all: Vec<String>,
    obligations_not_safe: Vec<String>,
    rate_limit: Num,
    rate_window: Num,
    sprintf: BuiltinFn,
    ctx: Context,
}

fn at<'d>(data: &'d Data, path: &str) -> Result<&'d Data, NativeError> {
    path.split('.')
        .try_fold(data, |d, k| d.get(k))
        .ok_or_else(|| NativeError(format!("constitution data has no {path}")))
}

fn num(data: &Data, path: &str) -> Result<Num, NativeError> {
    match at(data, path)? {
        Data::Number(n) => {
            let text = n.to_string();
            let dec = Dec::parse(&text)
                .ok_or_else(|| NativeError(format!("{path} is out of the native range")))?;
            Ok(Num { dec, text })
        }
        _ => Err(NativeError(format!("{path} is not a number"))),
    }
}

fn dec(data: &Data, path: &str) -> Result<Dec, NativeError> {
    num(data, path).map(|n| n.dec)
}

fn strings(data: &Data, path: &str) -> Result<Vec<String>, NativeError> {
    string_list(at(data, path)?, path)
}

fn string_list(v: &Data, path: &str) -> Result<Vec<String>, NativeError> {
    match v {
        Data::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| NativeError(format!("{path} has a member that is not a string")))
            })
            .collect(),
        _ => Err(NativeError(format!("{path} is not an array"))),
    }
}

/// A Rego number value from a JSON literal, as the Wasm host builds builtin arguments.
fn number_value(text: &str) -> Rego {
    Rego::parse_rego(text).unwrap_or(Rego::Null)
}

impl Native {
    /// Checks and converts the constitution's data (`data.acgs.constitution`).
    pub fn build(c: &Data) -> Result<Native, NativeError> {
        let hash = at(c, "constitutional_hash")?
            .as_str()
            .ok_or_else(|| NativeError("constitutional_hash is not a string".into()))?
            .to_owned();
        let request_types = strings(c, "request_types")?;
        let grammar_chars = at(c, "action_grammar.characters")?
            .as_str()
            .ok_or_else(|| NativeError("action_grammar.characters is not a string".into()))?
            .to_owned();
        let mut action_patterns = Vec::new();
        let mut action_parts: Vec<String> = Vec::new();
        let mut part_index = |part: &str| match action_parts.iter().position(|p| p == part) {
            Some(i) => i,
            None => {
                action_parts.push(part.to_owned());
                action_parts.len() - 1
            }
        };
        // `{category: [name, ...]}`; the pattern a reason names is "category.name".
        match at(c, "critical_patterns.actions")? {
            Data::Object(m) => {
                for (category, names) in m {
                    let path = format!("critical_patterns.actions.{category}");
                    for name in string_list(names, &path)? {
                        let (ci, ni) = (part_index(category), part_index(&name));
                        action_patterns.push((format!("{category}.{name}"), ci, ni));
                    }
                }
            }
            _ => {
                return Err(NativeError(
                    "critical_patterns.actions is not an object".into(),
                ))
            }
        }
        let mut text_patterns = strings(c, "critical_patterns.text")?;
        // Each pattern gives one message, so duplicates change nothing.
        text_patterns.sort();
        text_patterns.dedup();
        let searcher = |patterns: &[String]| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(patterns)
                .map_err(|e| NativeError(format!("critical patterns: {e}")))
        };
        let text_search = searcher(&text_patterns)?;
        let parts_search = searcher(&action_parts)?;
        let mut limits = Vec::new();
        match at(c, "resource_limits")? {
            Data::Object(m) => {
                for k in m.keys() {
                    limits.push((k.clone(), num(c, &format!("resource_limits.{k}"))?));
                }
            }
            _ => return Err(NativeError("resource_limits is not an object".into())),
        }
        // Sorted by name as `sort(object.keys(...))` in the "unknown resource" reason.
        limits.sort_by(|a, b| a.0.cmp(&b.0));
        if limits.iter().any(|(k, _)| k.contains('.')) {
            return Err(NativeError("a resource name contains a dot".into()));
        }
        let known_resources = limits
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let scale = num(c, "scoring.scale")?;
        let scale_places = (0..=6u32)
            .find(|&p| {
                scale.dec.as_i64() == Some(10i64.pow(p)) && scale.text == 10i64.pow(p).to_string()
            })
            .ok_or_else(|| NativeError("scoring.scale is not a power of ten up to 10^6".into()))?;
        let mut principles = Vec::new();
        match at(c, "principles")? {
            Data::Object(m) => {
                for (name, spec) in m {
                    let w = num(spec, "weight")
                        .map_err(|e| NativeError(format!("principles.{name}: {}", e.0)))?;
                    if w.dec.gt(Dec::ZERO) == Some(true) {
                        if !PRINCIPLES.contains(&name.as_str()) {
                            return Err(NativeError(format!(
                                "principle {name} has a weight but no score in main.rego"
                            )));
                        }
                        principles.push((name.clone(), w.dec));
                    }
                }
            }
            _ => return Err(NativeError("principles is not an object".into())),
        }
        let weight_sum = principles
            .iter()
            .try_fold(Dec::ZERO, |acc, (_, w)| acc.plus(*w))
            .ok_or_else(|| NativeError("principle weights are out of range".into()))?;
        if principles.is_empty() {
            return Err(NativeError("no principle has a positive weight".into()));
        }
        let sprintf = acgs_rego::builtins::lookup("sprintf")
            .ok_or_else(|| NativeError("no sprintf builtin".into()))?;
        Ok(Native {
            hash,
            dangerous: strings(c, "dangerous_actions")?,
            safe: strings(c, "safe_actions")?,
            explanation_required: strings(c, "explanation_required_actions")?,
            actions: strings(c, "actions")?,
            grammar_ascii: ascii_table(&grammar_chars),
            grammar_chars,
            grammar_max: num(c, "action_grammar.max_length")?,
            request_types_joined: request_types.join(", "),
            request_types,
            text_patterns,
            text_search,
            action_patterns,
            action_parts,
            parts_search,
            limits,
            known_resources,
            t_allow: num(c, "thresholds.allow")?,
            t_trust: num(c, "thresholds.trust")?,
            t_constitutional: num(c, "thresholds.constitutional")?,
            t_explanation_chars: num(c, "thresholds.explanation_min_chars")?,
            t_max_harm: num(c, "thresholds.max_harm_risk")?,
            t_min_benefit: num(c, "thresholds.min_benefit")?,
            t_min_fairness: num(c, "thresholds.min_fairness_protected_groups")?,
            scale_places,
            scale: scale.dec,
            w_safety: dec(c, "scoring.weights.safety")?,
            w_constitutional: dec(c, "scoring.weights.constitutional")?,
            w_resources: dec(c, "scoring.weights.resources")?,
            w_transparency: dec(c, "scoring.weights.transparency")?,
            s_not_dangerous: dec(c, "scoring.safety.not_dangerous")?,
            s_sandboxed: dec(c, "scoring.safety.sandboxed")?,
            s_rate: dec(c, "scoring.safety.within_rate_limit")?,
            tr_base: dec(c, "scoring.transparency.base")?,
            tr_explanation: dec(c, "scoring.transparency.explanation")?,
            tr_audit: dec(c, "scoring.transparency.audit")?,
            acc_audit: dec(c, "scoring.accountability.audit")?,
            acc_party: dec(c, "scoring.accountability.responsible_party")?,
            aut_respected: dec(c, "scoring.autonomy.respected")?,
            aut_consent: dec(c, "scoring.autonomy.overridden_with_consent")?,
            aut_no_consent: dec(c, "scoring.autonomy.overridden_without_consent")?,
            default_benefit: num(c, "scoring.defaults.benefit_assessment")?,
            default_harm: num(c, "scoring.defaults.harm_risk_assessment")?,
            default_fairness: num(c, "scoring.defaults.fairness_assessment")?,
            principles,
            weight_sum,
            obligations_all: strings(c, "obligations.all")?,
            obligations_not_safe: strings(c, "obligations.not_safe")?,
            rate_limit: num(c, "rate_limits.per_minute.decision")?,
            rate_window: num(c, "rate_limits.window_seconds")?,
            sprintf,
            ctx: Context { now_ns: 0 },
        })
    }

    /// The evaluator for a loaded bundle: its Rego sources must be the ones implemented here,
    /// its data must convert, and on probe requests covering every rule its decisions must
    /// equal those of `wasm` (the bundle's compiled policy) as JSON values.
    pub fn for_bundle(
        constitution: &Data,
        rego_digests: &[String],
        wasm: impl FnMut(&Data) -> Option<Vec<u8>>,
    ) -> Result<Native, NativeError> {
        for (name, digest) in [
            ("main.rego", MAIN_REGO_SHA256),
            ("lib.rego", LIB_REGO_SHA256),
        ] {
            if !rego_digests.iter().any(|d| d == digest) {
                return Err(NativeError(format!(
                    "the bundle's rules differ from the ones the native evaluator implements ({name})"
                )));
            }
        }
        let native = Native::build(constitution)?;
        native.check(wasm)?;
        Ok(native)
    }

    /// Requests that exercise every rule: a compliant one and variations of it.
    fn probes(&self) -> Vec<Data> {
        use serde_json::json;
        let action = self
            .safe
            .first()
            .cloned()
            .unwrap_or_else(|| "report.other".into());
        let resources: serde_json::Map<String, Data> = self
            .limits
            .iter()
            .map(|(k, l)| {
                (
                    k.clone(),
                    serde_json::from_str(&l.text).unwrap_or(Data::Null),
                )
            })
            .collect();
        let base = json!({
            "constitutional_hash": self.hash,
            "action": action,
            "type": self.request_types.first(),
            "context": {
                "environment": {"sandbox_enabled": true, "audit_enabled": true},
                "agent": {"trust_level": 0.9, "requested_resources": resources},
                "responsible_party": "acgs",
                "explanation": "x".repeat(80),
            },
        });
        let mut out = vec![base.clone()];
        let mut vary = |path: &[&str], v: Data| {
            let mut req = base.clone();
            let mut node = &mut req;
            for (i, k) in path.iter().enumerate() {
                let Some(obj) = node.as_object_mut() else {
                    return;
                };
                if i + 1 == path.len() {
                    if v.is_null() && k.starts_with('-') {
                        obj.remove(k.trim_start_matches('-'));
                    } else {
                        obj.insert((*k).to_owned(), v.clone());
                    }
                    break;
                }
                node = obj.entry((*k).to_owned()).or_insert_with(|| json!({}));
            }
            out.push(req);
        };
        for a in [self.dangerous.first(), self.explanation_required.first()]
            .into_iter()
            .flatten()
        {
            vary(&["action"], json!(a));
        }
        if let Some((p, _, _)) = self.action_patterns.first() {
            vary(&["action"], json!(format!("{}_V2", p.to_uppercase())));
        }
        if let Some(p) = self.text_patterns.first() {
            vary(
                &["context", "explanation"],
                json!(format!("Please {} now", p.to_uppercase())),
            );
            vary(&["context", "code"], json!(p));
        }
        if let Some(d) = self.dangerous.first() {
            vary(&["action"], json!(format!(" {}\t", d.to_uppercase())));
        }
        if let Some(a) = self.safe.first() {
            vary(&["action"], json!(format!("{a}\u{200b}")));
            vary(&["action"], json!(format!("{a}.unlisted")));
            vary(&["action"], json!(a.to_uppercase()));
        }
        vary(&["action"], json!("  "));
        vary(
            &["trusted"],
            json!({"request_count_1m": 1, "agent": {"trust_level": 0.5}}),
        );
        vary(
            &["trusted"],
            json!({"request_count_1m": 1, "agent": {"trust_level": 1}}),
        );
        vary(&["trusted"], json!({"agent": {"trust_level": "high"}}));
        vary(&["trusted"], json!({"agent": [0.9]}));
        vary(&["trusted"], json!({"agent": {"trust_level": 2}}));
        vary(&["-action"], Data::Null);
        vary(&["action"], json!(""));
        vary(&["action"], json!(7));
        vary(&["-constitutional_hash"], Data::Null);
        vary(&["type"], json!("bogus"));
        vary(&["type"], json!({"k": [1, null]}));
        vary(&["context", "agent", "trust_level"], json!(0.1));
        vary(&["context", "agent", "trust_level"], json!(1.5));
        vary(&["context", "agent", "trust_level"], json!("high"));
        vary(&["context", "agent", "-trust_level"], Data::Null);
        vary(&["context", "environment", "sandbox_enabled"], json!(false));
        vary(&["context", "environment", "audit_enabled"], json!(1));
        vary(&["context", "responsible_party"], json!(""));
        vary(&["context", "explanation"], json!("short"));
        vary(&["context", "benefit_assessment"], json!(0.1));
        vary(&["context", "benefit_assessment"], json!(2));
        vary(&["context", "harm_risk_assessment"], json!(0.9));
        vary(&["context", "fairness_assessment"], json!(0.5));
        vary(&["context", "affects_protected_groups"], json!(true));
        vary(&["context", "overrides_user_preference"], json!(true));
        vary(&["context", "user_consent"], json!(true));
        vary(
            &["context", "agent", "requested_resources"],
            json!({"gpu": 1}),
        );
        vary(&["context", "agent", "requested_resources"], json!({}));
        vary(&["context", "agent", "requested_resources"], json!([1]));
        vary(&["context"], json!("text"));
        vary(&["trusted"], json!({"request_count_1m": 1_000_000}));
        vary(&["trusted"], json!({"request_count_1m": -1}));
        vary(&["trusted"], json!({"request_count_1m": "5"}));
        if let Some((k, l)) = self.limits.first() {
            let over = l.dec.plus(Dec::ONE).map(|d| d.times(Dec::int(3)));
            if let Some(Some(over)) = over {
                if let Some(v) = over.as_i64() {
                    vary(&["context", "agent", "requested_resources", k], json!(v));
                }
            }
            vary(&["context", "agent", "requested_resources", k], json!(-1));
            vary(&["context", "agent", "requested_resources", k], json!("1"));
            vary(&["context", "agent", "requested_resources", k], json!(0.5));
        }
        out
    }

    /// Decides every probe here and in the Wasm; any difference disables the evaluator.
    fn check(&self, mut wasm: impl FnMut(&Data) -> Option<Vec<u8>>) -> Result<(), NativeError> {
        for (i, probe) in self.probes().iter().enumerate() {
            let bytes = serde_json::to_vec(probe).map_err(|e| NativeError(e.to_string()))?;
            let Ok(doc) = Json::parse(&bytes) else {
                continue;
            };
            let Some(mine) = self.decide(&doc) else {
                continue;
            };
            let theirs = wasm(probe)
                .ok_or_else(|| NativeError(format!("probe {i}: the Wasm gave no decision")))?;
            let same = matches!(
                (serde_json::from_slice::<Data>(&mine), serde_json::from_slice::<Data>(&theirs)),
                (Ok(a), Ok(b)) if a == b
            );
            if !same {
                return Err(NativeError(format!(
                    "probe {i} decided differently from the Wasm (native {}, Wasm {})",
                    String::from_utf8_lossy(&mine),
                    String::from_utf8_lossy(&theirs)
                )));
            }
        }
        Ok(())
    }

    fn fmt(&self, format: &str, args: Vec<Rego>) -> Option<String> {
        match (self.sprintf)(&[Rego::str(format), Rego::Array(args)], &self.ctx) {
            Ok(Some(Rego::String(s))) => Some(s),
            _ => None,
        }
    }

    /// The decision for a request (a parsed JSON object), as the JSON text of the decision
    /// object; `None` when the request is one this evaluator leaves to the Wasm.
    pub fn decide(&self, request: &Json<'_>) -> Option<Vec<u8>> {
        let Json::Obj(_) = request else { return None };
        let action = request.get("action");
        if let Some(a) = action.and_then(Json::as_str) {
            let a = action_name(a);
            if self.dangerous.iter().any(|d| *d == a) {
                let reason = self.fmt(
                    "action %s is dangerous and always denied",
                    vec![Rego::str(a.as_ref())],
                )?;
                return Some(self.zero_decision(&reason));
            }
        }
        match request.get("constitutional_hash") {
            None => {}
            Some(Json::Str(h)) if *h == self.hash => {}
            // Another constitution's hash is refused before evaluation by `decide`; other
            // callers get the Wasm's answer.
            Some(_) => return None,
        }
        if !numbers_fit(request) {
            return None;
        }
        let mut e = Eval::new(self, request)?;
        e.run()?;
        Some(e.write())
    }

    fn zero_decision(&self, reason: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        out.extend_from_slice(
            br#"{"allow":false,"compliance_score":0,"conditions":[],"constitutional_hash":"#,
        );
        write_str(&mut out, &self.hash);
        out.extend_from_slice(br#","evaluation_details":{"constitutional":{"principles":{"#);
        for (i, (p, _)) in self.principles.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, p);
            out.extend_from_slice(b":0");
        }
        out.extend_from_slice(
            br#"},"score":0},"resources":0,"safety":0,"transparency":0},"reasons":["#,
        );
        write_str(&mut out, reason);
        out.extend_from_slice(b"]}");
        out
    }
}

/// `lib.action_name`: the canonical form every list is matched against (surrounding ASCII
/// white space trimmed, A-Z lowered; any other character kept, for the grammar to refuse).
pub fn action_name(a: &str) -> Cow<'_, str> {
    ascii_lower(a.trim_matches([' ', '\t', '\r', '\n']))
}

/// `lib.ascii_lower`: A-Z mapped to a-z, every other character kept; no copy when there is
/// nothing to map (the common case).
fn ascii_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

impl Native {
    /// `lib.valid_action_name`: in the constitution's grammar.
    fn valid_action_name(&self, name: &str) -> Option<bool> {
        let chars = i64::try_from(name.chars().count()).ok()?;
        Some(
            !name.is_empty()
                && !Dec::int(chars).gt(self.grammar_max.dec)?
                && name
                    .chars()
                    .all(|ch| match self.grammar_ascii.get(ch as usize) {
                        Some(allowed) => *allowed,
                        None => self.grammar_chars.contains(ch),
                    })
                && name.split('.').all(|segment| !segment.is_empty()),
        )
    }
}

/// Which ASCII characters occur in `chars`.
fn ascii_table(chars: &str) -> [bool; 128] {
    let mut table = [false; 128];
    for ch in chars.chars() {
        if let Some(slot) = table.get_mut(ch as usize) {
            *slot = true;
        }
    }
    table
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

fn type_name(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Num(_) => "number",
        Json::Str(_) => "string",
        Json::Arr(_) => "array",
        Json::Obj(_) => "object",
    }
}

/// A request value as the Rego value the Wasm host would hand to `sprintf` (numbers from their
/// literal text, as the host parses the text the Wasm writes).
fn rego_of(v: &Json<'_>) -> Rego {
    match v {
        Json::Null => Rego::Null,
        Json::Bool(b) => Rego::Bool(*b),
        Json::Num(n) => number_value(n),
        Json::Str(s) => Rego::str(s.as_ref()),
        Json::Arr(items) => Rego::Array(items.iter().map(rego_of).collect()),
        Json::Obj(members) => Rego::Object(
            members
                .iter()
                .map(|(k, x)| (Rego::str(k.as_ref()), rego_of(x)))
                .collect(),
        ),
    }
}

/// Whether every number in the request has an exact [`Dec`] (else the Wasm decides).
fn numbers_fit(v: &Json<'_>) -> bool {
    match v {
        Json::Num(t) => Dec::parse(t).is_some(),
        Json::Arr(items) => items.iter().all(numbers_fit),
        Json::Obj(members) => members.iter().all(|(_, x)| numbers_fit(x)),
        _ => true,
    }
}

/// An object member when `v` is an object.
fn member<'r, 'a>(v: Option<&'r Json<'a>>, key: &str) -> Option<&'r Json<'a>> {
    match v {
        Some(o @ Json::Obj(_)) => o.get(key),
        _ => None,
    }
}

/// A view that is the value when it is an object, else absent (main.rego's `ctx`, `env`, ...).
fn object<'r, 'a>(v: Option<&'r Json<'a>>) -> Option<&'r Json<'a>> {
    v.filter(|x| matches!(x, Json::Obj(_)))
}

fn is_true(v: Option<&Json<'_>>) -> bool {
    matches!(v, Some(Json::Bool(true)))
}

/// A number field's value and literal text.
fn number<'r>(v: Option<&'r Json<'_>>) -> Option<(Dec, &'r str)> {
    match v {
        Some(Json::Num(t)) => Some((Dec::parse(t)?, t)),
        _ => None,
    }
}

/// Which of `count` patterns occur in `text` after `lib.ascii_lower` (A-Z mapped, every other
/// character kept), overlapping occurrences included.
fn found_patterns(search: &AhoCorasick, count: usize, text: &str) -> Vec<bool> {
    let mut found = vec![false; count];
    if count == 0 {
        return found;
    }
    for m in search.find_overlapping_iter(ascii_lower(text).as_ref()) {
        if let Some(f) = found.get_mut(m.pattern().as_usize()) {
            *f = true;
        }
    }
    found
}

struct Eval<'n, 'r, 'a> {
    n: &'n Native,
    input: &'r Json<'a>,
    ctx: Option<&'r Json<'a>>,
    violations: BTreeSet<String>,
    reasons: BTreeSet<String>,
    allowed: bool,
    compliance: i64,
    safety: i64,
    resources: i64,
    transparency: i64,
    constitutional: i64,
    principle_scores: Vec<(usize, i64)>,
    safe: bool,
}

impl<'n, 'r, 'a> Eval<'n, 'r, 'a> {
    fn new(n: &'n Native, input: &'r Json<'a>) -> Option<Self> {
        Some(Eval {
            n,
            input,
            ctx: object(input.get("context")),
            violations: BTreeSet::new(),
            reasons: BTreeSet::new(),
            allowed: false,
            compliance: 0,
            safety: 0,
            resources: 0,
            transparency: 0,
            constitutional: 0,
            principle_scores: Vec::new(),
            safe: false,
        })
    }

    /// `lib.round_score`: round(x * scale), kept as the integer numerator over the scale.
    fn round_score(&self, x: Dec) -> Option<i64> {
        x.times(self.n.scale)?.round()?.as_i64()
    }

    fn scaled(&self, q: i64) -> Option<Dec> {
        Dec::int(q).quotient(self.n.scale)
    }

    /// `assessment(name)`: the context's value when it is a number in [0, 1], else the default.
    fn assessment(&self, name: &str, default: &'n Num) -> Option<(Dec, Rego)> {
        if let Some((v, text)) = number(member(self.ctx, name)) {
            if v.lt(Dec::ZERO)? || v.gt(Dec::ONE)? {
                return Some((default.dec, default.rego()));
            }
            return Some((v, number_value(text)));
        }
        Some((default.dec, default.rego()))
    }

    fn violation(&mut self, msg: String) {
        self.violations.insert(msg);
    }

    /// A hard-rule violation with a formatted reason (`sprintf` as the Rego calls it).
    fn violate(&mut self, format: &str, args: Vec<Rego>) -> Option<()> {
        let msg = self.n.fmt(format, args)?;
        self.violations.insert(msg);
        Some(())
    }

    fn run(&mut self) -> Option<()> {
        let n = self.n;
        let input = self.input;
        let ctx = self.ctx;
        let env = object(member(ctx, "environment"));
        let agent = object(member(ctx, "agent"));
        let requested = object(member(agent, "requested_resources"));
        let trusted = object(input.get("trusted"));
        let registered = object(member(trusted, "agent"));
        let action = input.get("action");
        let action_str = action.and_then(Json::as_str);
        let name = action_str.map(action_name);
        let in_list =
            |list: &[String]| name.as_deref().is_some_and(|a| list.iter().any(|x| x == a));
        self.safe = in_list(&n.safe);
        let known = in_list(&n.actions) || self.safe || in_list(&n.explanation_required);

        let sandboxed = is_true(member(env, "sandbox_enabled"));
        let audited = is_true(member(env, "audit_enabled"));
        let has_party =
            matches!(member(ctx, "responsible_party"), Some(Json::Str(s)) if !s.is_empty());
        let overrides = is_true(member(ctx, "overrides_user_preference"));
        let consented = is_true(member(ctx, "user_consent"));
        let count = member(trusted, "request_count_1m");
        let count_num = number(count);
        let rate_limited = match count_num {
            Some((c, _)) => c.gt(n.rate_limit.dec)?,
            None => false,
        };
        let rate_valid = match (count, count_num) {
            (None, _) => true,
            (Some(_), Some((c, _))) => !c.lt(Dec::ZERO)?,
            (Some(_), None) => false,
        };
        let explanation_required = in_list(&n.explanation_required);
        let explanation_adequate = !explanation_required
            || match member(ctx, "explanation") {
                Some(Json::Str(s)) => {
                    let chars = i64::try_from(s.chars().count()).ok()?;
                    !Dec::int(chars).lt(n.t_explanation_chars.dec)?
                }
                _ => false,
            };

        // Scores.
        let mut safety_raw = n.s_not_dangerous;
        if sandboxed {
            safety_raw = safety_raw.plus(n.s_sandboxed)?;
        }
        if rate_valid && !rate_limited {
            safety_raw = safety_raw.plus(n.s_rate)?;
        }
        let autonomy = if !overrides {
            n.aut_respected
        } else if consented {
            n.aut_consent
        } else {
            n.aut_no_consent
        };
        let mut accountability = Dec::ZERO;
        if audited {
            accountability = accountability.plus(n.acc_audit)?;
        }
        if has_party {
            accountability = accountability.plus(n.acc_party)?;
        }
        let (benefit, benefit_v) = self.assessment("benefit_assessment", &n.default_benefit)?;
        let (harm, harm_v) = self.assessment("harm_risk_assessment", &n.default_harm)?;
        let (fairness, fairness_v) = self.assessment("fairness_assessment", &n.default_fairness)?;
        let clamp = |x: Dec| -> Option<Dec> { Dec::ONE.min(Dec::ZERO.max(x)?) };
        let mut weighted = Dec::ZERO;
        let mut principle_scores = Vec::with_capacity(n.principles.len());
        for (i, (name, weight)) in n.principles.iter().enumerate() {
            let raw = match name.as_str() {
                "autonomy" => autonomy,
                "beneficence" => benefit,
                "non_maleficence" => Dec::ONE.minus(harm)?,
                "fairness" => fairness,
                "accountability" => accountability,
                _ => return None,
            };
            let score = clamp(raw)?;
            weighted = weighted.plus(weight.times(score)?)?;
            principle_scores.push((i, self.round_score(score)?));
        }
        let constitutional_raw = weighted.quotient(n.weight_sum)?;
        let constitutional_clamped = clamp(constitutional_raw)?;
        let constitutional = self.round_score(constitutional_clamped)?;

        let mut ratio_sum = Dec::ZERO;
        let mut ratio_count = 0i64;
        if let Some(Json::Obj(members)) = requested {
            for (k, v) in members {
                let Some((_, limit)) = n.limits.iter().find(|(name, _)| name == k.as_ref()) else {
                    continue;
                };
                if let Some((v, _)) = number(Some(v)) {
                    if !v.lt(Dec::ZERO)? {
                        let ratio = Dec::ONE.min(limit.dec.quotient(v.max(Dec::ONE)?)?)?;
                        ratio_sum = ratio_sum.plus(ratio)?;
                        ratio_count += 1;
                    }
                }
            }
        }
        let resources_raw = if ratio_count > 0 {
            ratio_sum.quotient(Dec::int(ratio_count))?
        } else {
            Dec::ONE
        };
        let mut transparency_raw = n.tr_base;
        if explanation_adequate {
            transparency_raw = transparency_raw.plus(n.tr_explanation)?;
        }
        if audited {
            transparency_raw = transparency_raw.plus(n.tr_audit)?;
        }
        let safety_score = clamp(safety_raw)?;
        let resources_score = clamp(resources_raw)?;
        let transparency_score = clamp(transparency_raw)?;
        let total = n
            .w_safety
            .times(safety_score)?
            .plus(n.w_constitutional.times(constitutional_clamped)?)?
            .plus(n.w_resources.times(resources_score)?)?
            .plus(n.w_transparency.times(transparency_score)?)?;
        self.compliance = self.round_score(total)?;
        self.safety = self.round_score(safety_score)?;
        self.resources = self.round_score(resources_score)?;
        self.transparency = self.round_score(transparency_score)?;
        self.constitutional = constitutional;
        self.principle_scores = principle_scores;

        // Soft findings.
        if !sandboxed {
            self.reasons.insert("sandbox is not enabled".into());
        }
        if !audited {
            self.reasons.insert("audit is not enabled".into());
        }
        if !has_party {
            self.reasons.insert("no responsible party is named".into());
        }
        if !explanation_adequate {
            let msg = n.fmt(
                "action %s requires an explanation of at least %v characters",
                vec![Rego::str(name.as_deref()?), n.t_explanation_chars.rego()],
            )?;
            self.reasons.insert(msg);
        }

        // Hard rules.
        if input.get("constitutional_hash").is_none() {
            self.violation("constitutional_hash is missing".into());
        }
        // `lib.lookup(input, path)` finds a value only through objects, so each field's parent
        // is one of the object views above.
        let parent = |p: Parent| match p {
            Parent::Input => Some(input),
            Parent::Context => ctx,
            Parent::Environment => env,
            Parent::Agent => agent,
            Parent::Trusted => trusted,
            Parent::Registered => registered,
        };
        for (p, key, path, want) in TYPED_FIELDS {
            if let Some(v) = member(parent(p), key) {
                let got = type_name(v);
                if got != want {
                    self.violate(
                        "%s must be of type %s, not %s",
                        vec![Rego::str(path), Rego::str(want), Rego::str(got)],
                    )?;
                }
            }
        }
        for (p, key, path) in UNIT_FIELDS {
            if let Some((v, text)) = number(member(parent(p), key)) {
                if v.lt(Dec::ZERO)? || v.gt(Dec::ONE)? {
                    self.violate(
                        "%s must be within [0, 1], got %v",
                        vec![Rego::str(path), number_value(text)],
                    )?;
                }
            }
        }
        if let Some((v, text)) = number(count) {
            if v.lt(Dec::ZERO)? {
                self.violate(
                    "%s must not be negative, got %v",
                    vec![Rego::str("trusted.request_count_1m"), number_value(text)],
                )?;
            }
        }
        match action {
            None => self.violation("action is missing".into()),
            Some(Json::Str(s)) if !s.is_empty() => {}
            Some(_) => self.violation("action must be a non-empty string".into()),
        }
        if let Some(a) = name
            .as_deref()
            .filter(|_| action_str.is_some_and(|s| !s.is_empty()))
        {
            if !n.valid_action_name(a)? {
                self.violate(
                    "action is not a valid action name: dot-separated segments of the characters %s, at most %v characters",
                    vec![Rego::str(n.grammar_chars.as_str()), n.grammar_max.rego()],
                )?;
            } else if !known {
                self.violate(
                    "action %s is not in the constitution's action catalogue",
                    vec![Rego::str(a)],
                )?;
            }
        }
        if let Some(t) = input.get("type") {
            let listed =
                matches!(t, Json::Str(s) if n.request_types.iter().any(|x| x == s.as_ref()));
            if !listed {
                self.violate(
                    "type %v is not one of: %s",
                    vec![rego_of(t), Rego::str(n.request_types_joined.as_str())],
                )?;
            }
        }
        // `lib.believed_trust`: the claim, lowered to the registered level; a claim never
        // raises it.
        let claim = member(agent, "trust_level");
        let registered_trust = number(member(registered, "trust_level"));
        if claim.is_none() && registered_trust.is_none() {
            self.violation("context.agent.trust_level is missing".into());
        }
        let believed = match (number(claim), registered_trust) {
            (Some(t), Some(r)) => Some(if r.0.lt(t.0)? { r } else { t }),
            (Some(t), None) => Some(t),
            (None, r) => r,
        };
        if let Some((t, text)) = believed {
            if t.lt(n.t_trust.dec)? {
                self.violate(
                    "trust level %v is below the minimum %v",
                    vec![number_value(text), n.t_trust.rego()],
                )?;
            }
        }
        if let Some(a) = action_str {
            let found = found_patterns(&n.parts_search, n.action_parts.len(), a);
            for (p, category, name) in &n.action_patterns {
                let has = |i: &usize| found.get(*i).copied().unwrap_or(false);
                if has(category) && has(name) {
                    self.violate(
                        "action %s matches the critical safety pattern %s",
                        vec![Rego::str(a), Rego::str(p.as_str())],
                    )?;
                }
            }
        }
        let texts = [
            ("action", action),
            ("explanation", member(ctx, "explanation")),
            ("code", member(ctx, "code")),
        ];
        for (field, text) in texts {
            let Some(Json::Str(text)) = text else {
                continue;
            };
            let found = found_patterns(&n.text_search, n.text_patterns.len(), text);
            for (p, _) in n.text_patterns.iter().zip(found).filter(|(_, f)| *f) {
                self.violate(
                    "%s contains the critical safety pattern: %s",
                    vec![Rego::str(field), Rego::str(p.as_str())],
                )?;
            }
        }
        if let Some(Json::Obj(members)) = requested {
            for (k, v) in members {
                let limit = n
                    .limits
                    .iter()
                    .find(|(name, _)| name == k.as_ref())
                    .map(|(_, l)| l);
                let Some(limit) = limit else {
                    self.violate(
                        "unknown resource %s (known: %s)",
                        vec![Rego::str(k.as_ref()), Rego::str(n.known_resources.as_str())],
                    )?;
                    continue;
                };
                let Some((value, text)) = number(Some(v)) else {
                    self.violate(
                        "requested resource %s must be a number, not %s",
                        vec![Rego::str(k.as_ref()), Rego::str(type_name(v))],
                    )?;
                    continue;
                };
                if value.lt(Dec::ZERO)? {
                    self.violate(
                        "requested resource %s must not be negative, got %v",
                        vec![Rego::str(k.as_ref()), number_value(text)],
                    )?;
                }
                if value.gt(limit.dec)? {
                    self.violate(
                        "requested resource %s %v exceeds the limit %v",
                        vec![Rego::str(k.as_ref()), number_value(text), limit.rego()],
                    )?;
                }
            }
        }
        if rate_limited {
            let (_, text) = count_num?;
            let msg = n.fmt(
                "rate limit exceeded: %v requests in %v s, limit %v",
                vec![
                    number_value(text),
                    n.rate_window.rego(),
                    n.rate_limit.rego(),
                ],
            )?;
            self.violation(msg);
        }
        if harm.gt(n.t_max_harm.dec)? {
            self.violate(
                "harm risk %v exceeds the maximum %v",
                vec![harm_v, n.t_max_harm.rego()],
            )?;
        }
        if benefit.lt(n.t_min_benefit.dec)? {
            self.violate(
                "benefit %v is below the minimum %v",
                vec![benefit_v, n.t_min_benefit.rego()],
            )?;
        }
        if overrides && !consented {
            self.violation("overrides the user's preference without consent".into());
        }
        if is_true(member(ctx, "affects_protected_groups")) && fairness.lt(n.t_min_fairness.dec)? {
            self.violate(
                "fairness %v for protected groups is below the minimum %v",
                vec![fairness_v, n.t_min_fairness.rego()],
            )?;
        }
        let constitutional_dec = self.scaled(constitutional)?;
        if constitutional_dec.lt(n.t_constitutional.dec)? {
            self.violate(
                "constitutional principles score %v is below the minimum %v",
                vec![self.score_value(constitutional)?, n.t_constitutional.rego()],
            )?;
        }

        // Verdict.
        let compliance_dec = self.scaled(self.compliance)?;
        let meets = !compliance_dec.lt(n.t_allow.dec)?;
        self.allowed = self.violations.is_empty() && meets;
        if self.allowed {
            let msg = n.fmt(
                "compliance score %v meets the threshold %v",
                vec![self.score_value(self.compliance)?, n.t_allow.rego()],
            )?;
            self.reasons.insert(msg);
        }
        if !meets {
            let msg = n.fmt(
                "compliance score %v is below the threshold %v",
                vec![self.score_value(self.compliance)?, n.t_allow.rego()],
            )?;
            self.reasons.insert(msg);
        }
        let violations = std::mem::take(&mut self.violations);
        self.reasons.extend(violations);
        Some(())
    }

    fn score_text(&self, q: i64) -> Option<String> {
        Dec::scaled_text(q, self.n.scale_places)
    }

    fn score_value(&self, q: i64) -> Option<Rego> {
        Some(number_value(&self.score_text(q)?))
    }

    fn write(&self) -> Vec<u8> {
        let n = self.n;
        let text = |q: i64| self.score_text(q).unwrap_or_else(|| "0".into());
        let mut out = Vec::with_capacity(640);
        out.extend_from_slice(b"{\"allow\":");
        out.extend_from_slice(if self.allowed { b"true" } else { b"false" });
        out.extend_from_slice(b",\"compliance_score\":");
        out.extend_from_slice(text(self.compliance).as_bytes());
        out.extend_from_slice(b",\"conditions\":[");
        if self.allowed {
            let mut conditions: Vec<&str> = n.obligations_all.iter().map(String::as_str).collect();
            if !self.safe {
                conditions.extend(n.obligations_not_safe.iter().map(String::as_str));
            }
            conditions.sort_unstable();
            for (i, c) in conditions.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, c);
            }
        }
        out.extend_from_slice(b"],\"constitutional_hash\":");
        write_str(&mut out, &n.hash);
        out.extend_from_slice(b",\"evaluation_details\":{\"constitutional\":{\"principles\":{");
        for (j, (i, q)) in self.principle_scores.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            if let Some((name, _)) = n.principles.get(*i) {
                write_str(&mut out, name);
            }
            out.push(b':');
            out.extend_from_slice(text(*q).as_bytes());
        }
        out.extend_from_slice(b"},\"score\":");
        out.extend_from_slice(text(self.constitutional).as_bytes());
        out.extend_from_slice(b"},\"resources\":");
        out.extend_from_slice(text(self.resources).as_bytes());
        out.extend_from_slice(b",\"safety\":");
        out.extend_from_slice(text(self.safety).as_bytes());
        out.extend_from_slice(b",\"transparency\":");
        out.extend_from_slice(text(self.transparency).as_bytes());
        out.extend_from_slice(b"},\"reasons\":[");
        for (i, r) in self.reasons.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(&mut out, r);
        }
        out.extend_from_slice(b"]}");
        out
    }
}
