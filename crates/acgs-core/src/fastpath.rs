//! The partial evaluator: decisions the constitution's data says need no full evaluation.
//!
//! The constitution declares, under `fast_path`, actions that are always denied
//! (`deny_actions`: the decision depends on the action alone) and actions that are allowed
//! when every one of `allow_conditions` holds (the conditions pin down every input the
//! decision depends on). At load, ACGS evaluates the real policy once per such action on two
//! different inputs built to satisfy those rules; an action whose two decisions differ is left
//! to full evaluation. At request time it checks the rules natively and answers with the
//! stored decision. Nothing here is specific to one constitution: change the data and the fast
//! path follows.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::canon::Json;
use crate::native::Dec;

/// A numeric bound from the data, compared exactly with the request's number literal (a
/// double would let `10.000000000000000001` pass `lte 10`): as a fixed-width decimal where
/// both fit one (the common case, one parse per comparison), else digit by digit. Its double
/// value is used only to build sample requests.
#[derive(Debug, Clone)]
struct Bound {
    literal: String,
    dec: Option<Dec>,
    approx: f64,
}

impl Bound {
    /// The order of a request's value against the bound; `None` for a value that is not a
    /// number or cannot be compared (the condition then fails and full evaluation decides).
    fn order_of(&self, v: &Json<'_>) -> Option<Ordering> {
        let Json::Num(n) = v else { return None };
        Dec::parse(n)
            .zip(self.dec)
            .and_then(|(d, b)| d.compare(b))
            .or_else(|| Dec::compare_literals(n, &self.literal))
    }
}

/// One predicate over a path of the request.
#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Gte(Bound),
    Lte(Bound),
    Absent,
    NonemptyString,
    In(Vec<Value>),
    IsNumber,
    IsBool,
    IsString,
    /// An object whose keys are all in the list.
    KeysSubset(Vec<String>),
    /// A string that, with ASCII letters lowercased, contains none of the patterns.
    NotContainsAny(Vec<String>),
}

#[derive(Debug, Clone)]
enum Condition {
    Leaf {
        path: Vec<String>,
        op: Op,
    },
    /// Holds when every condition of at least one branch holds.
    AnyOf(Vec<Vec<Condition>>),
}

impl Condition {
    fn holds(&self, request: &Json<'_>) -> bool {
        let (path, op) = match self {
            Condition::Leaf { path, op } => (path, op),
            Condition::AnyOf(branches) => {
                return branches.iter().any(|b| b.iter().all(|c| c.holds(request)))
            }
        };
        let v = request.path(path);
        match (op, v) {
            (Op::Absent, v) => v.is_none(),
            (_, None) => false,
            (Op::Eq(want), Some(v)) => v.equals(want),
            // A number that cannot be compared exactly fails the condition: full evaluation
            // decides it.
            (Op::Gte(x), Some(v)) => x.order_of(v).is_some_and(Ordering::is_ge),
            (Op::Lte(x), Some(v)) => x.order_of(v).is_some_and(Ordering::is_le),
            (Op::NonemptyString, Some(v)) => v.as_str().is_some_and(|s| !s.is_empty()),
            (Op::In(opts), Some(v)) => opts.iter().any(|o| v.equals(o)),
            (Op::IsNumber, Some(v)) => matches!(v, Json::Num(_)),
            (Op::IsBool, Some(v)) => matches!(v, Json::Bool(_)),
            (Op::IsString, Some(v)) => matches!(v, Json::Str(_)),
            (Op::KeysSubset(keys), Some(Json::Obj(members))) => members
                .iter()
                .all(|(k, _)| keys.iter().any(|want| want == k)),
            (Op::KeysSubset(_), Some(_)) => false,
            (Op::NotContainsAny(patterns), Some(Json::Str(s))) => {
                let lower = s.to_ascii_lowercase();
                !patterns.iter().any(|p| lower.contains(p.as_str()))
            }
            (Op::NotContainsAny(_), Some(_)) => false,
        }
    }

    fn constrains_action(&self) -> bool {
        match self {
            Condition::Leaf { path, .. } => path.first().is_some_and(|p| p == "action"),
            Condition::AnyOf(branches) => {
                branches.iter().flatten().any(Condition::constrains_action)
            }
        }
    }
}

/// Why an action declared in the data is not served by the fast path.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub action: String,
    pub reason: String,
}

/// The fast path of one loaded bundle.
#[derive(Debug, Default)]
pub struct FastPath {
    deny: HashMap<String, Arc<[u8]>>,
    allow: HashMap<String, Arc<[u8]>>,
    conditions: Vec<Condition>,
    pub skipped: Vec<Skipped>,
}

/// How a fast-path spec in the data is malformed.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError(pub String);

impl FastPath {
    /// Reads the spec at `data.<spec_path>` and precomputes decisions with `evaluate`, which
    /// runs the full policy on an input document and returns the decision's JSON (`None`
    /// when the policy gives no decision or fails).
    pub fn build(
        spec: &Value,
        mut evaluate: impl FnMut(&Value) -> Option<Vec<u8>>,
    ) -> Result<FastPath, SpecError> {
        let obj = spec
            .as_object()
            .ok_or_else(|| SpecError("fast_path must be an object".into()))?;
        let actions = |key: &str| -> Result<Vec<String>, SpecError> {
            match obj.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| SpecError(format!("fast_path.{key} holds a non-string")))
                    })
                    .collect(),
                Some(_) => Err(SpecError(format!("fast_path.{key} must be an array"))),
            }
        };
        let deny_actions = actions("deny_actions")?;
        let allow_actions = actions("allow_actions")?;
        let conditions = match obj.get("allow_conditions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(parse_condition).collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(SpecError(
                    "fast_path.allow_conditions must be an array".into(),
                ))
            }
        };
        if conditions.iter().any(Condition::constrains_action) {
            return Err(SpecError(
                "allow_conditions may not constrain the action".into(),
            ));
        }
        let witness = match obj.get("allow_witness") {
            None => None,
            Some(w @ Value::Object(_)) => Some(w.clone()),
            Some(_) => {
                return Err(SpecError(
                    "fast_path.allow_witness must be an object".into(),
                ))
            }
        };

        let mut fp = FastPath {
            conditions,
            ..FastPath::default()
        };
        if witness.as_ref().is_some_and(|w| !fp.satisfied_by(w)) {
            return Err(SpecError(
                "fast_path.allow_witness does not satisfy allow_conditions".into(),
            ));
        }
        // Inputs that satisfy every condition: the data's witness and two generated ones
        // (each branch's first and last choices). All of them must give the same decision
        // for an action to be served.
        let samples: Vec<Value> = [witness, Some(fp.sample(false)), Some(fp.sample(true))]
            .into_iter()
            .flatten()
            .filter(|s| fp.satisfied_by(s))
            .collect();
        let sample_b = samples
            .last()
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let with_action = |doc: &Value, action: &str| -> Value {
            let mut d = doc.clone();
            if let Value::Object(m) = &mut d {
                m.insert("action".into(), Value::String(action.to_owned()));
            }
            d
        };
        for action in &deny_actions {
            // The decision must depend on the action alone: a bare request and a fully
            // populated one must agree.
            let bare = Value::Object(Map::from_iter([(
                "action".to_owned(),
                Value::String(action.clone()),
            )]));
            let full = with_action(&sample_b, action);
            match (evaluate(&bare), evaluate(&full)) {
                (Some(a), Some(b)) if a == b && is_deny(&a) => {
                    fp.deny.insert(action.clone(), Arc::from(a));
                }
                (Some(a), Some(b)) if a == b => fp.skip(action, "its decision is not a deny"),
                (Some(_), Some(_)) => {
                    fp.skip(action, "its decision depends on more than the action")
                }
                _ => fp.skip(action, "the policy gives no decision for it"),
            }
        }
        for action in &allow_actions {
            if fp.deny.contains_key(action) {
                fp.skip(action, "it is also a deny action");
                continue;
            }
            if samples.is_empty() {
                fp.skip(
                    action,
                    "no input satisfying allow_conditions could be built",
                );
                continue;
            }
            let decisions: Option<Vec<Vec<u8>>> = samples
                .iter()
                .map(|s| evaluate(&with_action(s, action)))
                .collect();
            match decisions {
                Some(ds) if ds.windows(2).all(|w| matches!(w, [a, b] if a == b)) => {
                    if let Some(first) = ds.into_iter().next() {
                        fp.allow.insert(action.clone(), Arc::from(first));
                    }
                }
                Some(_) => fp.skip(action, "the conditions do not pin its decision down"),
                None => fp.skip(action, "the policy gives no decision for it"),
            }
        }
        Ok(fp)
    }

    fn skip(&mut self, action: &str, reason: &str) {
        self.skipped.push(Skipped {
            action: action.to_owned(),
            reason: reason.to_owned(),
        });
    }

    pub fn deny_actions(&self) -> usize {
        self.deny.len()
    }

    pub fn allow_actions(&self) -> usize {
        self.allow.len()
    }

    /// The stored decision for `request`, if the fast path can answer it.
    pub fn lookup(&self, request: &Json<'_>) -> Option<&Arc<[u8]>> {
        let action = request.get("action")?.as_str()?;
        if let Some(d) = self.deny.get(action) {
            return Some(d);
        }
        let d = self.allow.get(action)?;
        self.conditions
            .iter()
            .all(|c| c.holds(request))
            .then_some(d)
    }

    /// Whether a document satisfies every condition (checked through the same code that
    /// serves requests).
    fn satisfied_by(&self, doc: &Value) -> bool {
        let Ok(bytes) = serde_json::to_vec(doc) else {
            return false;
        };
        Json::parse(&bytes).is_ok_and(|j| self.conditions.iter().all(|c| c.holds(&j)))
    }

    /// A request meant to satisfy every condition (callers check that it does). `alt` picks
    /// other values where the conditions leave room (each `any_of`'s last branch instead of its
    /// first, the other end of a range, another member of a set, another string).
    fn sample(&self, alt: bool) -> Value {
        let mut leaves: Vec<(&[String], &Op)> = Vec::new();
        fn flatten<'c>(cs: &'c [Condition], alt: bool, out: &mut Vec<(&'c [String], &'c Op)>) {
            for c in cs {
                match c {
                    Condition::Leaf { path, op } => out.push((path, op)),
                    Condition::AnyOf(branches) => {
                        let pick = if alt {
                            branches.last()
                        } else {
                            branches.first()
                        };
                        if let Some(b) = pick {
                            flatten(b, alt, out);
                        }
                    }
                }
            }
        }
        flatten(&self.conditions, alt, &mut leaves);
        let mut by_path: Vec<(&[String], Vec<&Op>)> = Vec::new();
        for (path, op) in leaves {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, ops)) => ops.push(op),
                None => by_path.push((path, vec![op])),
            }
        }
        // Parents first, so an object a condition asks for exists before its members go in.
        by_path.sort_by_key(|(p, _)| p.len());
        let mut root = Value::Object(Map::new());
        for (path, ops) in by_path {
            if let Some(v) = sample_value(&ops, alt) {
                insert_path(&mut root, path, v);
            }
        }
        root
    }
}

fn is_deny(decision: &[u8]) -> bool {
    Json::parse(decision)
        .ok()
        .and_then(|d| d.get("allow").cloned())
        .is_some_and(|a| a == Json::Bool(false))
}

fn sample_value(ops: &[&Op], alt: bool) -> Option<Value> {
    if ops.iter().any(|o| matches!(o, Op::Absent)) {
        return None;
    }
    if let Some(Op::Eq(v)) = ops.iter().find(|o| matches!(o, Op::Eq(_))) {
        return Some(v.clone());
    }
    if let Some(Op::In(opts)) = ops.iter().find(|o| matches!(o, Op::In(_))) {
        let pick = if alt { opts.last() } else { opts.first() };
        return pick.cloned();
    }
    let lo = ops
        .iter()
        .filter_map(|o| match o {
            Op::Gte(x) => Some(x.approx),
            _ => None,
        })
        .reduce(f64::max);
    let hi = ops
        .iter()
        .filter_map(|o| match o {
            Op::Lte(x) => Some(x.approx),
            _ => None,
        })
        .reduce(f64::min);
    let number = |x: f64| Number::from_f64(x).map(Value::Number);
    match (lo, hi) {
        (Some(l), Some(h)) => return number(if alt { h } else { l }),
        (Some(l), None) => return number(if alt { l + 1.0 } else { l }),
        (None, Some(h)) => return number(if alt { h } else { h.min(0.0) }),
        (None, None) => {}
    }
    if ops.iter().any(|o| matches!(o, Op::KeysSubset(_))) {
        return Some(Value::Object(Map::new()));
    }
    if ops
        .iter()
        .any(|o| matches!(o, Op::NonemptyString | Op::NotContainsAny(_)))
    {
        return Some(Value::String(if alt { "sample text" } else { "x" }.into()));
    }
    if ops.iter().any(|o| matches!(o, Op::IsString)) {
        return Some(Value::String(if alt { "x" } else { "" }.into()));
    }
    if ops.iter().any(|o| matches!(o, Op::IsNumber)) {
        return Some(Value::from(i32::from(alt)));
    }
    if ops.iter().any(|o| matches!(o, Op::IsBool)) {
        return Some(Value::Bool(alt));
    }
    None
}

fn insert_path(root: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for p in parents {
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), v);
    }
}

fn parse_condition(v: &Value) -> Result<Condition, SpecError> {
    parse_condition_at(v, 0)
}

fn parse_condition_at(v: &Value, depth: usize) -> Result<Condition, SpecError> {
    let bad = |why: &str| SpecError(format!("fast_path condition {v}: {why}"));
    if v.get("op").and_then(Value::as_str) == Some("any_of") {
        if depth > 0 {
            return Err(bad("any_of may not nest"));
        }
        let Some(Value::Array(branches)) = v.get("value") else {
            return Err(bad("any_of needs an array of branches"));
        };
        let branches = branches
            .iter()
            .map(|b| match b {
                Value::Array(cs) if !cs.is_empty() => cs
                    .iter()
                    .map(|c| parse_condition_at(c, depth + 1))
                    .collect::<Result<Vec<_>, _>>(),
                _ => Err(bad("each any_of branch is a non-empty array of conditions")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if branches.is_empty() {
            return Err(bad("any_of needs at least one branch"));
        }
        return Ok(Condition::AnyOf(branches));
    }
    let strings = || -> Result<Vec<String>, SpecError> {
        match v.get("value") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("needs an array of strings")),
            _ => Err(bad("needs an array of strings")),
        }
    };
    let path = match v.get("path") {
        Some(Value::Array(p)) if !p.is_empty() => p
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("path must be strings"))?,
        Some(Value::String(s)) if !s.is_empty() => s.split('.').map(str::to_owned).collect(),
        _ => return Err(bad("needs a non-empty path")),
    };
    let value = v.get("value");
    let num = || match value {
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|approx| {
                let literal = n.to_string();
                Bound {
                    dec: Dec::parse(&literal),
                    literal,
                    approx,
                }
            })
            .ok_or_else(|| bad("needs a numeric value")),
        _ => Err(bad("needs a numeric value")),
    };
    let op = match v.get("op").and_then(Value::as_str) {
        Some("eq") => Op::Eq(value.cloned().ok_or_else(|| bad("needs a value"))?),
        Some("gte") => Op::Gte(num()?),
        Some("lte") => Op::Lte(num()?),
        Some("absent") => Op::Absent,
        Some("nonempty_string") => Op::NonemptyString,
        Some("in") => match value {
            Some(Value::Array(a)) if !a.is_empty() => Op::In(a.clone()),
            _ => return Err(bad("needs a non-empty array value")),
        },
        Some("is_number") => Op::IsNumber,
        Some("is_bool") => Op::IsBool,
        Some("is_string") => Op::IsString,
        Some("keys_subset") => Op::KeysSubset(strings()?),
        Some("not_contains_any") => Op::NotContainsAny(strings()?),
        Some(other) => return Err(bad(&format!("unknown op {other:?}"))),
        None => return Err(bad("needs an op")),
    };
    Ok(Condition::Leaf { path, op })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// A stand-in policy written in Rust for the unit tests; the integration tests use the
    /// real constitution compiled by OPA.
    fn policy(input: &Value) -> Option<Vec<u8>> {
        let action = input.get("action")?.as_str()?;
        let d = if action.starts_with("bad.") {
            json!({"allow": false, "reasons": [format!("{action} is dangerous")]})
        } else {
            let sandbox = input.pointer("/env/sandbox") == Some(&json!(true));
            let trust = input
                .pointer("/trust")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            json!({"allow": sandbox && trust >= 0.8, "score": if trust >= 0.8 { 1 } else { 0 }})
        };
        serde_json::to_vec(&d).ok()
    }

    fn spec(conditions: Value) -> Value {
        json!({"deny_actions": ["bad.rm"], "allow_actions": ["read"], "allow_conditions": conditions})
    }

    fn req(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn serves_declared_actions_only_when_conditions_hold() {
        let fp = FastPath::build(
            &spec(json!([
                {"path": ["env", "sandbox"], "op": "eq", "value": true},
                {"path": "trust", "op": "gte", "value": 0.8},
                {"path": ["trust"], "op": "lte", "value": 1},
            ])),
            policy,
        )
        .unwrap();
        assert_eq!(
            (fp.deny_actions(), fp.allow_actions()),
            (1, 1),
            "{:?}",
            fp.skipped
        );
        let hit = req(json!({"action": "read", "env": {"sandbox": true}, "trust": 0.9}));
        let d = fp.lookup(&Json::parse(&hit).unwrap()).unwrap();
        assert_eq!(
            &**d,
            policy(&serde_json::from_slice(&hit).unwrap())
                .unwrap()
                .as_slice()
        );
        for miss in [
            json!({"action": "read", "env": {"sandbox": false}, "trust": 0.9}),
            json!({"action": "read", "env": {"sandbox": true}, "trust": 0.7}),
            json!({"action": "read", "env": {"sandbox": true}}),
            json!({"action": "write", "env": {"sandbox": true}, "trust": 0.9}),
            json!({"action": 3}),
            json!(["read"]),
        ] {
            assert!(
                fp.lookup(&Json::parse(&req(miss.clone())).unwrap())
                    .is_none(),
                "{miss}"
            );
        }
        let deny = req(json!({"action": "bad.rm", "anything": [1, 2]}));
        assert!(fp.lookup(&Json::parse(&deny).unwrap()).is_some());
    }

    #[test]
    fn conditions_that_leave_the_decision_open_disable_the_action() {
        // Without an upper bound on... nothing pins `sandbox`: the two samples disagree.
        let fp = FastPath::build(
            &spec(json!([{"path": "trust", "op": "gte", "value": 0.8}])),
            policy,
        )
        .unwrap();
        // Both samples lack env.sandbox, so both decisions are equal (deny at score 1): the
        // check can only compare what the conditions allow; it is a guard, not a proof.
        assert_eq!(fp.allow_actions(), 1);
        let fp = FastPath::build(
            &spec(
                json!([{"path": "env.sandbox", "op": "in", "value": [true, false]},
                         {"path": "trust", "op": "gte", "value": 0.8}]),
            ),
            policy,
        )
        .unwrap();
        assert_eq!(fp.allow_actions(), 0);
        assert_eq!(fp.skipped.len(), 1);
    }

    #[test]
    fn malformed_specs_are_errors() {
        for bad in [
            json!([]),
            json!({"deny_actions": "x"}),
            json!({"allow_conditions": [{"path": [], "op": "eq", "value": 1}]}),
            json!({"allow_conditions": [{"path": "a", "op": "near"}]}),
            json!({"allow_conditions": [{"path": "a", "op": "gte", "value": "1"}]}),
            json!({"allow_conditions": [{"path": "action", "op": "eq", "value": "x"}]}),
        ] {
            assert!(FastPath::build(&bad, policy).is_err(), "{bad}");
        }
    }
}
