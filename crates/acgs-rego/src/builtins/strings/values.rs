//! cast_*, numbers.range_step, object.subset, graph.reachable_paths, semver.*, uuid.*, rand.intn.

use std::collections::{BTreeMap, BTreeSet};

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive};

use super::{fail, int_operand, ok, operand, str_operand, type_err};
use crate::builtins::{BuiltinError, BuiltinResult, Context};
use crate::value::{Number, Value};

pub(super) fn cast_array(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        Value::Array(a) => ok(Value::Array(a.clone())),
        Value::Set(s) => ok(Value::Array(s.iter().cloned().collect())),
        other => Err(type_err(1, other, &["array", "set"])),
    }
}

pub(super) fn cast_set(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        Value::Array(a) => ok(Value::Set(a.iter().cloned().collect())),
        Value::Set(s) => ok(Value::Set(s.clone())),
        other => Err(type_err(1, other, &["array", "set"])),
    }
}

pub(super) fn cast_string(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        v @ Value::String(_) => ok(v.clone()),
        other => Err(type_err(1, other, &["string"])),
    }
}

pub(super) fn cast_boolean(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        v @ Value::Bool(_) => ok(v.clone()),
        other => Err(type_err(1, other, &["boolean"])),
    }
}

pub(super) fn cast_null(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        Value::Null => ok(Value::Null),
        other => Err(type_err(1, other, &["null"])),
    }
}

pub(super) fn cast_object(args: &[Value], _: &Context) -> BuiltinResult {
    match operand(args, 1)? {
        v @ Value::Object(_) => ok(v.clone()),
        other => Err(type_err(1, other, &["object"])),
    }
}

/// OPA's `BigIntOperand`.
fn big_int_operand(args: &[Value], pos: usize) -> Result<BigInt, BuiltinError> {
    let not_int = || {
        BuiltinError(format!(
            "operand {pos} must be integer number but got floating-point number"
        ))
    };
    match operand(args, pos)? {
        Value::Number(Number::Int(i)) => Ok(BigInt::from(*i)),
        Value::Number(Number::Big(s)) => s.parse().map_err(|_| not_int()),
        Value::Number(Number::Float(f)) => {
            if f.is_finite() && f.fract() == 0.0 {
                format!("{f:.0}").parse().map_err(|_| not_int())
            } else {
                Err(not_int())
            }
        }
        other => Err(type_err(pos, other, &["integer"])),
    }
}

fn big_to_value(b: &BigInt) -> Value {
    match b.to_i64() {
        Some(i) => Value::int(i),
        None => Value::Number(Number::Big(b.to_string())),
    }
}

/// OPA bounds a range only by cancellation; the host has no such hook, so it refuses ranges
/// that would exhaust memory instead.
const MAX_RANGE_ELEMENTS: u64 = 10_000_000;

pub(super) fn numbers_range_step(args: &[Value], _: &Context) -> BuiltinResult {
    let from = big_int_operand(args, 1)?;
    let to = big_int_operand(args, 2)?;
    let step = big_int_operand(args, 3)?;
    if !step.is_positive() {
        return fail("numbers.range_step: step must be a positive integer");
    }
    let span = (&to - &from).abs();
    let n = (&span / &step)
        .to_u64()
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    if n > MAX_RANGE_ELEMENTS {
        return fail("numbers.range_step: range too large");
    }
    let ascending = from <= to;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut i = from;
    while if ascending { i <= to } else { i >= to } {
        out.push(big_to_value(&i));
        if ascending {
            i += &step;
        } else {
            i -= &step;
        }
    }
    ok(Value::Array(out))
}

fn object_subset_of(sup: &BTreeMap<Value, Value>, sub: &BTreeMap<Value, Value>) -> bool {
    sub.iter().all(|(k, sub_v)| match sup.get(k) {
        None => false,
        Some(sup_v) if sup_v == sub_v => true,
        Some(Value::Object(a)) => matches!(sub_v, Value::Object(b) if object_subset_of(a, b)),
        Some(Value::Set(a)) => matches!(sub_v, Value::Set(b) if b.is_subset(a)),
        Some(Value::Array(a)) => matches!(sub_v, Value::Array(b) if array_subset_of(a, b)),
        Some(_) => false,
    })
}

/// Whether `sub` occurs contiguously in `sup`.
fn array_subset_of(sup: &[Value], sub: &[Value]) -> bool {
    if sub.len() > sup.len() {
        return false;
    }
    sub.is_empty() || sup.windows(sub.len()).any(|w| w == sub)
}

/// OPA's array/set case, quirks included: it counts matching array members (duplicates
/// too) down from the set's size and reports whether the count ever reached zero.
fn array_set_subset(sup: &[Value], sub: &BTreeSet<Value>) -> bool {
    let mut unmatched = i64::try_from(sub.len()).unwrap_or(i64::MAX);
    for v in sup {
        if sub.contains(v) {
            unmatched -= 1;
        }
        if unmatched == 0 {
            return true;
        }
    }
    false
}

pub(super) fn object_subset(args: &[Value], _: &Context) -> BuiltinResult {
    let result = match (operand(args, 1)?, operand(args, 2)?) {
        (Value::Object(a), Value::Object(b)) => object_subset_of(a, b),
        (Value::Set(a), Value::Set(b)) => b.is_subset(a),
        (Value::Array(a), Value::Array(b)) => array_subset_of(a, b),
        (Value::Array(a), Value::Set(b)) => array_set_subset(a, b),
        _ => return fail("both arguments object.subset must be of the same type or array and set"),
    };
    ok(Value::Bool(result))
}

fn vertices(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Set(s) => s.iter().collect(),
        _ => Vec::new(),
    }
}

/// Paths are enumerated, so a dense graph can explode; past this many steps the call fails
/// rather than hold the host.
const MAX_PATH_STEPS: usize = 1_000_000;

pub(super) fn reachable_paths(args: &[Value], _: &Context) -> BuiltinResult {
    let graph = match operand(args, 1)? {
        Value::Object(o) => o,
        other => return Err(type_err(1, other, &["object"])),
    };
    let initial = match operand(args, 2)? {
        v @ (Value::Array(_) | Value::Set(_)) => vertices(v),
        other => return Err(type_err(2, other, &["{array, set}"])),
    };
    let mut result = BTreeSet::new();
    // Depth-first with an explicit stack: (vertex, path before it, vertices already on the path).
    let mut stack: Vec<(&Value, Vec<Value>, BTreeSet<&Value>)> = Vec::new();
    for node in initial {
        let Some(edges) = graph.get(node) else {
            continue;
        };
        let neighbours = vertices(edges);
        if neighbours.is_empty() {
            result.insert(Value::Array(vec![node.clone()]));
            continue;
        }
        for n in neighbours {
            stack.push((n, vec![node.clone()], BTreeSet::from([node])));
        }
    }
    let mut steps = 0usize;
    while let Some((root, mut path, mut reached)) = stack.pop() {
        steps += 1;
        if steps > MAX_PATH_STEPS {
            return fail("graph.reachable_paths: too many paths");
        }
        let Some(edges) = graph.get(root) else {
            result.insert(Value::Array(path));
            continue;
        };
        path.push(root.clone());
        let neighbours = vertices(edges);
        if neighbours.is_empty() {
            result.insert(Value::Array(path));
            continue;
        }
        reached.insert(root);
        for n in neighbours {
            if reached.contains(n) {
                result.insert(Value::Array(path.clone()));
            } else {
                stack.push((n, path.clone(), reached.clone()));
            }
        }
    }
    ok(Value::Set(result))
}

struct SemVer<'a> {
    major: i64,
    minor: i64,
    patch: i64,
    pre: &'a str,
}

fn is_ident_list(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn all_decimals(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_numeric(s: &str) -> Option<i64> {
    if s.is_empty() || s.starts_with(['+', '-']) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// OPA's semver grammar: optional `v`, `MAJOR.MINOR.PATCH`, `-pre`, `+meta`.
fn parse_semver(v: &str) -> Option<SemVer<'_>> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let (v, meta) = match v.split_once('+') {
        Some((a, m)) => (a, Some(m)),
        None => (v, None),
    };
    if meta.is_some_and(|m| !is_ident_list(m)) {
        return None;
    }
    let (v, pre) = match v.split_once('-') {
        Some((a, p)) => (a, Some(p)),
        None => (v, None),
    };
    if let Some(p) = pre {
        let leading_zero = p
            .split('.')
            .any(|id| id.len() > 1 && id.starts_with('0') && all_decimals(id));
        if !is_ident_list(p) || leading_zero {
            return None;
        }
    }
    let mut parts = v.split('.');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(SemVer {
        major: parse_numeric(a)?,
        minor: parse_numeric(b)?,
        patch: parse_numeric(c)?,
        pre: pre.unwrap_or(""),
    })
}

fn compare_semver(a: &SemVer<'_>, b: &SemVer<'_>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let core = (a.major, a.minor, a.patch).cmp(&(b.major, b.minor, b.patch));
    if core != Ordering::Equal || a.pre == b.pre {
        return core;
    }
    match (a.pre.is_empty(), b.pre.is_empty()) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    let mut xs = a.pre.split('.');
    let mut ys = b.pre.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (all_decimals(x), all_decimals(y)) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => x
                        .parse::<i64>()
                        .unwrap_or(i64::MAX)
                        .cmp(&y.parse::<i64>().unwrap_or(i64::MAX)),
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

pub(super) fn semver_compare(args: &[Value], _: &Context) -> BuiltinResult {
    let a = str_operand(args, 1)?;
    let b = str_operand(args, 2)?;
    let Some(va) = parse_semver(a) else {
        return fail(format!("operand 1: string {a} is not a valid SemVer"));
    };
    let Some(vb) = parse_semver(b) else {
        return fail(format!("operand 2: string {b} is not a valid SemVer"));
    };
    let n = match compare_semver(&va, &vb) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    };
    ok(Value::int(n))
}

pub(super) fn semver_is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let valid = matches!(operand(args, 1)?, Value::String(s) if parse_semver(s).is_some());
    ok(Value::Bool(valid))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], BuiltinError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| BuiltinError(format!("random source: {e}")))?;
    Ok(buf)
}

pub(super) fn uuid_rfc4122(args: &[Value], _: &Context) -> BuiltinResult {
    operand(args, 1)?;
    let mut b = random_bytes::<16>()?;
    if let Some(x) = b.get_mut(6) {
        *x = (*x & 0x0f) | 0x40;
    }
    if let Some(x) = b.get_mut(8) {
        *x = (*x & 0x3f) | 0x80;
    }
    ok(Value::String(format_uuid(&b)))
}

fn format_uuid(b: &[u8; 16]) -> String {
    let hex = hex::encode(b);
    let part = |r: std::ops::Range<usize>| hex.get(r).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

fn hex_pair(s: &[u8], at: usize) -> Option<u8> {
    let hi = char::from(*s.get(at)?).to_digit(16)?;
    let lo = char::from(*s.get(at + 1)?).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

/// The forms google/uuid accepts: plain, `urn:uuid:`-prefixed, wrapped in any two bytes, or
/// 32 bare hex digits.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let b = s.as_bytes();
    let body: &[u8] = match b.len() {
        36 => b,
        45 => {
            if !b.get(..9)?.eq_ignore_ascii_case(b"urn:uuid:") {
                return None;
            }
            b.get(9..)?
        }
        38 => b.get(1..)?,
        32 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = hex_pair(b, i * 2)?;
            }
            return Some(out);
        }
        _ => return None,
    };
    if [8, 13, 18, 23].iter().any(|&i| body.get(i) != Some(&b'-')) {
        return None;
    }
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (o, &at) in out.iter_mut().zip(AT.iter()) {
        *o = hex_pair(body, at)?;
    }
    Some(out)
}

pub(super) fn uuid_parse(args: &[Value], _: &Context) -> BuiltinResult {
    let s = str_operand(args, 1)?;
    let Some(u) = parse_uuid(s) else {
        return Ok(None);
    };
    let byte = |i: usize| u.get(i).copied().unwrap_or(0);
    let version = byte(6) >> 4;
    let variant = match byte(8) {
        x if x & 0xc0 == 0x80 => "RFC4122",
        x if x & 0xe0 == 0xc0 => "Microsoft",
        x if x & 0xe0 == 0xe0 => "Future",
        _ => "Reserved",
    };
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        m.insert(Value::str(k), v);
    };
    put("version", Value::int(i64::from(version)));
    put("variant", Value::str(variant));
    if version == 1 || version == 2 {
        let be32 = |i: usize| u32::from_be_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)]);
        let be16 = |i: usize| u16::from_be_bytes([byte(i), byte(i + 1)]);
        // 100ns ticks since 1582-10-15, converted to Unix nanoseconds as google/uuid does.
        let ticks =
            i64::from(be32(0)) | (i64::from(be16(4)) << 32) | (i64::from(be16(6) & 0x0fff) << 48);
        const GREGORIAN_OFFSET: i64 = 122_192_928_000_000_000;
        let since = ticks - GREGORIAN_OFFSET;
        let nanos = (since / 10_000_000)
            .saturating_mul(1_000_000_000)
            .saturating_add((since % 10_000_000) * 100);
        put("time", Value::int(nanos));
        let node: Vec<String> = (10..16).map(|i| format!("{:02x}", byte(i))).collect();
        put("nodeid", Value::String(node.join("-")));
        let first = byte(10);
        let mac = if first & 0b11 == 0b11 {
            "local:multicast"
        } else if first & 0b01 == 0b01 {
            "global:multicast"
        } else if first & 0b10 == 0b10 {
            "local:unicast"
        } else {
            "global:unicast"
        };
        put("macvariables", Value::str(mac));
        put("clocksequence", Value::int(i64::from(be16(8) & 0x3fff)));
        if version == 2 {
            put("id", Value::int(i64::from(be32(0))));
            let domain = match byte(9) {
                0 => "Person".to_owned(),
                1 => "Group".to_owned(),
                2 => "Org".to_owned(),
                d => format!("Domain{d}"),
            };
            put("domain", Value::String(domain));
        }
    }
    ok(Value::Object(m))
}

pub(super) fn rand_intn(args: &[Value], _: &Context) -> BuiltinResult {
    str_operand(args, 1)?;
    let n = int_operand(args, 2)?.unsigned_abs();
    if n == 0 {
        return ok(Value::int(0));
    }
    // Rejection sampling keeps the draw uniform.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let r = u64::from_le_bytes(random_bytes::<8>()?);
        if r < zone {
            return ok(Value::int(i64::try_from(r % n).unwrap_or(0)));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn call(f: fn(&[Value], &Context) -> BuiltinResult, args: &str) -> BuiltinResult {
        let Value::Array(a) = Value::parse_rego(args).unwrap() else {
            unreachable!()
        };
        f(&a, &Context { now_ns: 0 })
    }

    fn val(s: &str) -> Option<Value> {
        Some(Value::parse_rego(s).unwrap())
    }

    #[test]
    fn casts() {
        assert_eq!(call(cast_array, "[{1, 2}]").unwrap(), val("[1, 2]"));
        assert_eq!(call(cast_set, "[[2, 1, 2]]").unwrap(), val("{1, 2}"));
        assert_eq!(
            call(cast_string, "[1]").unwrap_err().0,
            "operand 1 must be string but got number"
        );
        assert_eq!(
            call(cast_array, "[1]").unwrap_err().0,
            "operand 1 must be one of {array, set} but got number"
        );
        assert_eq!(call(cast_null, "[null]").unwrap(), val("null"));
        assert!(call(cast_object, "[[]]").is_err());
        assert_eq!(call(cast_boolean, "[true]").unwrap(), val("true"));
    }

    #[test]
    fn range_step() {
        assert_eq!(
            call(numbers_range_step, "[0, 10, 2]").unwrap(),
            val("[0, 2, 4, 6, 8, 10]")
        );
        assert_eq!(
            call(numbers_range_step, "[10, 3, 2]").unwrap(),
            val("[10, 8, 6, 4]")
        );
        assert_eq!(
            call(numbers_range_step, "[0, 10, 99999999999999999999]").unwrap(),
            val("[0]")
        );
        assert_eq!(
            call(numbers_range_step, "[0, 10, -2]").unwrap_err().0,
            "numbers.range_step: step must be a positive integer"
        );
        assert_eq!(
            call(numbers_range_step, "[0.5, 10, 2]").unwrap_err().0,
            "operand 1 must be integer number but got floating-point number"
        );
        assert!(call(numbers_range_step, "[0, 100000000000, 1]").is_err());
    }

    #[test]
    fn subset() {
        assert_eq!(
            call(
                object_subset,
                r#"[{"a": {"b": [1, 2, 3]}, "c": 1}, {"a": {"b": [2, 3]}}]"#
            )
            .unwrap(),
            val("true")
        );
        assert_eq!(
            call(object_subset, r#"[{"a": [1, 2, 3]}, {"a": [1, 3]}]"#).unwrap(),
            val("false")
        );
        assert_eq!(
            call(object_subset, "[[1, 2, 3], {3, 1}]").unwrap(),
            val("true")
        );
        assert_eq!(call(object_subset, "[[1], set()]").unwrap(), val("true"));
        assert_eq!(
            call(object_subset, "[[1, 1], {1, 2}]").unwrap(),
            val("true")
        );
        assert_eq!(call(object_subset, "[{1, 2}, {2}]").unwrap(), val("true"));
        assert!(call(object_subset, "[{1, 2}, [2]]").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(
            call(
                reachable_paths,
                r#"[{"a": ["b"], "b": ["c"], "c": ["a"]}, ["a"]]"#
            )
            .unwrap(),
            val(r#"{["a", "b", "c"]}"#)
        );
        assert_eq!(
            call(reachable_paths, r#"[{"a": null}, ["a"]]"#).unwrap(),
            val(r#"{["a"]}"#)
        );
        assert_eq!(
            call(
                reachable_paths,
                r#"[{"a": ["b", "c"], "b": [], "c": ["d"]}, {"a"}]"#
            )
            .unwrap(),
            val(r#"{["a", "b"], ["a", "c"]}"#)
        );
        assert!(call(reachable_paths, r#"[1, [1]]"#).is_err());
        assert_eq!(
            call(reachable_paths, r#"[{}, "a"]"#).unwrap_err().0,
            "operand 2 must be {array, set} but got string"
        );
    }

    #[test]
    fn semver() {
        assert_eq!(
            call(semver_compare, r#"["1.0.0", "1.0.0-alpha"]"#).unwrap(),
            val("1")
        );
        assert_eq!(
            call(semver_compare, r#"["1.0.0-alpha.1", "1.0.0-alpha.beta"]"#).unwrap(),
            val("-1")
        );
        assert_eq!(
            call(semver_compare, r#"["v1.2.3+meta", "1.2.3"]"#).unwrap(),
            val("0")
        );
        assert_eq!(
            call(semver_compare, r#"["1.0.0-rc.2", "1.0.0-rc.10"]"#).unwrap(),
            val("-1")
        );
        assert_eq!(
            call(semver_compare, r#"["1", "1.0.0"]"#).unwrap_err().0,
            "operand 1: string 1 is not a valid SemVer"
        );
        assert_eq!(
            call(semver_compare, r#"["1.2.3", "1.2.3-01"]"#)
                .unwrap_err()
                .0,
            "operand 2: string 1.2.3-01 is not a valid SemVer"
        );
        for (v, want) in [
            ("1.2.3", true),
            ("1.02.3", false),
            ("1.2.3-", false),
            ("1.2.3-0", true),
            ("1.2", false),
            ("1.2.3+a..b", false),
        ] {
            assert_eq!(
                call(semver_is_valid, &format!("[\"{v}\"]")).unwrap(),
                Some(Value::Bool(want)),
                "{v}"
            );
        }
        assert_eq!(call(semver_is_valid, "[1]").unwrap(), val("false"));
    }

    #[test]
    fn uuids() {
        let Some(Value::String(u)) = call(uuid_rfc4122, r#"["k"]"#).unwrap() else {
            unreachable!()
        };
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_eq!(
            call(
                uuid_parse,
                r#"["urn:uuid:000003e8-48b9-21ee-b200-325096b39f47"]"#
            )
            .unwrap(),
            val(
                r#"{"clocksequence": 12800, "domain": "Person", "id": 1000, "macvariables": "local:unicast",
                    "nodeid": "32-50-96-b3-9f-47", "time": 1693566990121469600, "variant": "RFC4122", "version": 2}"#
            )
        );
        assert_eq!(
            call(uuid_parse, r#"["(00000000-0000-4000-8000-000000000000)"]"#).unwrap(),
            val(r#"{"variant": "RFC4122", "version": 4}"#)
        );
        assert_eq!(
            call(uuid_parse, r#"["6bea8ef2d3d33cd184e09bab06a52ece"]"#).unwrap(),
            val(r#"{"variant": "RFC4122", "version": 3}"#)
        );
        assert_eq!(call(uuid_parse, r#"["nope"]"#).unwrap(), None);
        assert!(call(uuid_parse, "[123]").is_err());
    }

    #[test]
    fn rand() {
        for _ in 0..100 {
            let Some(Value::Number(n)) = call(rand_intn, r#"["k", -7]"#).unwrap() else {
                unreachable!()
            };
            assert!((0..7).contains(&n.as_i64().unwrap()));
        }
        assert_eq!(call(rand_intn, r#"["k", 0]"#).unwrap(), val("0"));
        assert!(call(rand_intn, r#"["k", 1.5]"#).is_err());
    }
}
