//! Builtins over plan values, with the semantics of OPA's Wasm library: arithmetic on exact
//! decimals (libmpdec's results), comparisons by value, strings by Unicode code point where OPA
//! counts runes. Any builtin the host implements for the Wasm (`acgs_rego::builtins`: sprintf,
//! regex, time, crypto, ...) is called through it, so each exists once.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use acgs_rego::builtins::{BuiltinFn as HostFn, Context};

use crate::value::{Num, Val};

/// Results past these sizes are refused (the builtin is undefined), so one call cannot
/// exhaust memory.
const MAX_STRING_BYTES: usize = 16 << 20;
const MAX_ELEMS: usize = 1 << 20;

/// Why a builtin has no value: an error (the expression is undefined, as in OPA's non-strict
/// evaluation), or a result past the size limits (the evaluation stops).
#[derive(Debug)]
pub(crate) enum Fault {
    // The message is for OPA's strict mode (conformance cases with `strict_error`), which a
    // later step reports; non-strict evaluation only needs to know the call failed.
    #[allow(dead_code)]
    Undefined(String),
    TooLarge(&'static str),
}

impl From<String> for Fault {
    fn from(s: String) -> Fault {
        Fault::Undefined(s)
    }
}

impl From<&str> for Fault {
    fn from(s: &str) -> Fault {
        Fault::Undefined(s.to_owned())
    }
}

pub(crate) type Out = Result<Option<Val>, Fault>;
pub(crate) type NativeFn = fn(&[Val], &mut Ctx) -> Out;

/// Per-evaluation facts (the clock is fixed for one evaluation, as in OPA).
pub(crate) struct Ctx {
    pub host: Context,
}

impl Ctx {
    pub(crate) fn now() -> Ctx {
        Ctx {
            host: Context::now(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Impl {
    Native(NativeFn),
    Host(HostFn),
    /// `internal.print`: no value, never fails.
    Void,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Builtin {
    pub imp: Impl,
    /// Argument count, where known (host builtins check their own).
    pub arity: Option<usize>,
}

impl Builtin {
    pub(crate) fn arity_ok(&self, n: usize) -> bool {
        self.arity.is_none_or(|a| a == n)
    }
}

pub(crate) fn lookup(name: &str) -> Option<Builtin> {
    let (f, arity): (NativeFn, usize) = match name {
        "equal" => (equal, 2),
        "neq" => (neq, 2),
        "gt" => (gt, 2),
        "gte" => (gte, 2),
        "lt" => (lt, 2),
        "lte" => (lte, 2),
        "plus" => (plus, 2),
        "minus" => (minus, 2),
        "mul" => (mul, 2),
        "div" => (div, 2),
        "rem" => (rem, 2),
        "round" => (round, 1),
        "abs" => (abs, 1),
        "or" => (or, 2),
        "and" => (and, 2),
        "count" => (count, 1),
        "sum" => (sum, 1),
        "product" => (product, 1),
        "max" => (max, 1),
        "min" => (min, 1),
        "sort" => (sort, 1),
        "concat" => (concat, 2),
        "contains" => (contains, 2),
        "startswith" => (startswith, 2),
        "endswith" => (endswith, 2),
        "indexof" => (indexof, 2),
        "lower" => (lower, 1),
        "upper" => (upper, 1),
        "split" => (split, 2),
        "substring" => (substring, 3),
        "trim" => (trim, 2),
        "trim_space" => (trim_space, 1),
        "strings.replace_n" => (replace_n, 2),
        "is_array" => (is_array, 1),
        "is_boolean" => (is_boolean, 1),
        "is_null" => (is_null, 1),
        "is_number" => (is_number, 1),
        "is_object" => (is_object, 1),
        "is_set" => (is_set, 1),
        "is_string" => (is_string, 1),
        "object.get" => (object_get, 3),
        "object.keys" => (object_keys, 1),
        "object.union" => (object_union, 2),
        "array.concat" => (array_concat, 2),
        "array.slice" => (array_slice, 3),
        "internal.member_2" => (member_2, 2),
        "internal.member_3" => (member_3, 3),
        "numbers.range" => (numbers_range, 2),
        "internal.print" => {
            return Some(Builtin {
                imp: Impl::Void,
                arity: None,
            })
        }
        other => {
            return acgs_rego::builtins::lookup(other).map(|f| Builtin {
                imp: Impl::Host(f),
                arity: None,
            })
        }
    };
    Some(Builtin {
        imp: Impl::Native(f),
        arity: Some(arity),
    })
}

/// A host builtin called with plan values (converted both ways).
pub(crate) fn call_host(f: HostFn, args: &[Val], ctx: &Ctx) -> Out {
    let host: Vec<acgs_rego::Value> = args.iter().map(Val::to_host).collect();
    match f(&host, &ctx.host) {
        Ok(Some(v)) => Ok(Some(Val::from_host(&v))),
        Ok(None) => Ok(None),
        Err(e) => Err(Fault::Undefined(e.0)),
    }
}

fn arg(args: &[Val], i: usize) -> Result<&Val, String> {
    args.get(i)
        .ok_or_else(|| format!("operand {} missing", i + 1))
}

fn str_arg(args: &[Val], i: usize) -> Result<&str, String> {
    match arg(args, i)? {
        Val::Str(s) => Ok(s),
        other => Err(format!(
            "operand {} must be string but got {}",
            i + 1,
            other.type_name()
        )),
    }
}

fn num_arg(args: &[Val], i: usize) -> Result<&Num, String> {
    match arg(args, i)? {
        Val::Num(n) => Ok(n),
        other => Err(format!(
            "operand {} must be number but got {}",
            i + 1,
            other.type_name()
        )),
    }
}

fn int_arg(args: &[Val], i: usize) -> Result<i64, String> {
    num_arg(args, i)?
        .as_i64()
        .ok_or_else(|| format!("operand {} must be an integer", i + 1))
}

fn num(n: Option<Num>) -> Out {
    n.map(|n| Some(Val::Num(n)))
        .ok_or_else(|| Fault::Undefined("number out of range".to_owned()))
}

fn boolean(b: bool) -> Out {
    Ok(Some(Val::Bool(b)))
}

fn string(s: String) -> Out {
    if s.len() > MAX_STRING_BYTES {
        return Err(Fault::TooLarge("string"));
    }
    Ok(Some(Val::Str(Arc::from(s))))
}

fn cmp(args: &[Val]) -> Result<Ordering, Fault> {
    Ok(arg(args, 0)?.cmp(arg(args, 1)?))
}

fn equal(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Equal)
}
fn neq(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Equal)
}
fn gt(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Greater)
}
fn gte(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Less)
}
fn lt(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Less)
}
fn lte(a: &[Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Greater)
}

fn plus(a: &[Val], _: &mut Ctx) -> Out {
    num(num_arg(a, 0)?.plus(num_arg(a, 1)?))
}

/// Numbers subtract; sets give their difference.
fn minus(a: &[Val], _: &mut Ctx) -> Out {
    if let (Val::Set(x), Val::Set(y)) = (arg(a, 0)?, arg(a, 1)?) {
        let d: BTreeSet<Val> = x.difference(y).cloned().collect();
        return Ok(Some(Val::Set(Arc::new(d))));
    }
    num(num_arg(a, 0)?.minus(num_arg(a, 1)?))
}

fn mul(a: &[Val], _: &mut Ctx) -> Out {
    num(num_arg(a, 0)?.times(num_arg(a, 1)?))
}

/// Division by zero is undefined, as in OPA's Wasm.
fn div(a: &[Val], _: &mut Ctx) -> Out {
    let (x, y) = (num_arg(a, 0)?, num_arg(a, 1)?);
    if y.is_zero() {
        return Ok(None);
    }
    num(x.quotient(y))
}

/// Integers only; the remainder takes the dividend's sign.
fn rem(a: &[Val], _: &mut Ctx) -> Out {
    let (x, y) = (int_arg(a, 0)?, int_arg(a, 1)?);
    match x.checked_rem(y) {
        Some(r) => Ok(Some(Val::int(r))),
        None => Ok(None),
    }
}

fn round(a: &[Val], _: &mut Ctx) -> Out {
    num(num_arg(a, 0)?.round())
}

fn abs(a: &[Val], _: &mut Ctx) -> Out {
    let x = num_arg(a, 0)?;
    let zero = Num::int(0);
    if *x < zero {
        num(zero.minus(x))
    } else {
        num(Some(x.clone()))
    }
}

fn sets(a: &[Val]) -> Result<(&BTreeSet<Val>, &BTreeSet<Val>), Fault> {
    match (arg(a, 0)?, arg(a, 1)?) {
        (Val::Set(x), Val::Set(y)) => Ok((x, y)),
        _ => Err("operands must be sets".into()),
    }
}

fn or(a: &[Val], _: &mut Ctx) -> Out {
    let (x, y) = sets(a)?;
    Ok(Some(Val::Set(Arc::new(x.union(y).cloned().collect()))))
}

fn and(a: &[Val], _: &mut Ctx) -> Out {
    let (x, y) = sets(a)?;
    Ok(Some(Val::Set(Arc::new(
        x.intersection(y).cloned().collect(),
    ))))
}

fn count(a: &[Val], _: &mut Ctx) -> Out {
    let n = match arg(a, 0)? {
        Val::Str(s) => s.chars().count(),
        Val::Arr(x) => x.len(),
        Val::Obj(x) => x.len(),
        Val::Set(x) => x.len(),
        _ => return Ok(None),
    };
    Ok(Some(Val::int(i64::try_from(n).unwrap_or(i64::MAX))))
}

/// The elements of an array or a set (the Wasm's aggregates accept both).
fn elems(v: &Val) -> Option<Box<dyn Iterator<Item = &Val> + '_>> {
    match v {
        Val::Arr(a) => Some(Box::new(a.iter())),
        Val::Set(s) => Some(Box::new(s.iter())),
        _ => None,
    }
}

fn fold(a: &[Val], start: i64, op: fn(&Num, &Num) -> Option<Num>) -> Out {
    let Some(items) = elems(arg(a, 0)?) else {
        return Ok(None);
    };
    let mut acc = Num::int(start);
    for v in items {
        match v {
            Val::Num(n) => acc = op(&acc, n).ok_or("number out of range")?,
            _ => return Ok(None),
        }
    }
    num(Some(acc))
}

fn sum(a: &[Val], _: &mut Ctx) -> Out {
    fold(a, 0, Num::plus)
}

fn product(a: &[Val], _: &mut Ctx) -> Out {
    fold(a, 1, Num::times)
}

/// Empty collections have no maximum or minimum.
fn max(a: &[Val], _: &mut Ctx) -> Out {
    Ok(elems(arg(a, 0)?).and_then(|mut i| {
        i.try_fold(None::<&Val>, |m, v| Some(Some(m.map_or(v, |m| m.max(v)))))
            .flatten()
            .cloned()
    }))
}

fn min(a: &[Val], _: &mut Ctx) -> Out {
    Ok(elems(arg(a, 0)?).and_then(|mut i| {
        i.try_fold(None::<&Val>, |m, v| Some(Some(m.map_or(v, |m| m.min(v)))))
            .flatten()
            .cloned()
    }))
}

fn sort(a: &[Val], _: &mut Ctx) -> Out {
    let Some(items) = elems(arg(a, 0)?) else {
        return Ok(None);
    };
    let mut out: Vec<Val> = items.cloned().collect();
    out.sort();
    Ok(Some(Val::Arr(Arc::new(out))))
}

fn concat(a: &[Val], _: &mut Ctx) -> Out {
    let sep = str_arg(a, 0)?;
    let Some(items) = elems(arg(a, 1)?) else {
        return Ok(None);
    };
    let mut out = String::new();
    for (i, v) in items.enumerate() {
        let Val::Str(s) = v else { return Ok(None) };
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s);
        if out.len() > MAX_STRING_BYTES {
            return Err(Fault::TooLarge("string"));
        }
    }
    string(out)
}

fn contains(a: &[Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.contains(str_arg(a, 1)?))
}

fn startswith(a: &[Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.starts_with(str_arg(a, 1)?))
}

fn endswith(a: &[Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.ends_with(str_arg(a, 1)?))
}

/// The code-point index of the first match, or -1.
fn indexof(a: &[Val], _: &mut Ctx) -> Out {
    let (s, sub) = (str_arg(a, 0)?, str_arg(a, 1)?);
    let i = match s.find(sub) {
        Some(byte) => i64::try_from(s.get(..byte).map_or(0, |p| p.chars().count())).unwrap_or(-1),
        None => -1,
    };
    Ok(Some(Val::int(i)))
}

fn lower(a: &[Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.to_lowercase())
}

fn upper(a: &[Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.to_uppercase())
}

/// An empty separator splits into code points.
fn split(a: &[Val], _: &mut Ctx) -> Out {
    let (s, sep) = (str_arg(a, 0)?, str_arg(a, 1)?);
    let parts: Vec<Val> = if sep.is_empty() {
        s.chars()
            .map(|c| Val::str(c.encode_utf8(&mut [0; 4])))
            .collect()
    } else {
        s.split(sep).map(Val::str).collect()
    };
    Ok(Some(Val::Arr(Arc::new(parts))))
}

/// Code-point offsets; a negative length runs to the end; a negative start is undefined.
fn substring(a: &[Val], _: &mut Ctx) -> Out {
    let s = str_arg(a, 0)?;
    let (start, len) = (int_arg(a, 1)?, int_arg(a, 2)?);
    let Ok(start) = usize::try_from(start) else {
        return Ok(None);
    };
    if len == 0 {
        return string(String::new());
    }
    let rest = s.chars().skip(start);
    let out: String = match usize::try_from(len) {
        Ok(n) => rest.take(n).collect(),
        Err(_) => rest.collect(),
    };
    string(out)
}

fn trim(a: &[Val], _: &mut Ctx) -> Out {
    let (s, cut) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.trim_matches(|c| cut.contains(c)).to_owned())
}

fn trim_space(a: &[Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.trim().to_owned())
}

/// Replacements from an object; at each position the first matching key in key order wins.
fn replace_n(a: &[Val], _: &mut Ctx) -> Out {
    let Val::Obj(pairs) = arg(a, 0)? else {
        return Ok(None);
    };
    let s = str_arg(a, 1)?;
    let mut table: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs.iter() {
        match (k, v) {
            (Val::Str(k), Val::Str(v)) => table.push((k, v)),
            _ => return Ok(None),
        }
    }
    let empty = table.iter().position(|(k, _)| k.is_empty());
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut prev_empty = false;
    while i <= bytes.len() {
        let rest = bytes.get(i..).unwrap_or_default();
        let mut best = if i < bytes.len() {
            table
                .iter()
                .position(|(k, _)| !k.is_empty() && rest.starts_with(k.as_bytes()))
        } else {
            None
        };
        if let Some(e) = empty {
            if !prev_empty && best.is_none_or(|b| e < b) {
                best = Some(e);
            }
        }
        if let Some((old, new)) = best.and_then(|b| table.get(b)) {
            out.extend_from_slice(new.as_bytes());
            i += old.len();
            prev_empty = old.is_empty();
            if out.len() > MAX_STRING_BYTES {
                return Err(Fault::TooLarge("string"));
            }
            continue;
        }
        prev_empty = false;
        if let Some(&b) = bytes.get(i) {
            out.push(b);
        }
        i += 1;
    }
    string(String::from_utf8(out).map_err(|_| "invalid UTF-8 after replacement")?)
}

fn is_array(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Arr(_)))
}
fn is_boolean(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Bool(_)))
}
fn is_null(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Null))
}
fn is_number(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Num(_)))
}
fn is_object(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Obj(_)))
}
fn is_set(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Set(_)))
}
fn is_string(a: &[Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Str(_)))
}

/// `object.get(obj, key, default)`; an array key is a path (the empty path is `obj`).
fn object_get(a: &[Val], _: &mut Ctx) -> Out {
    let obj = arg(a, 0)?;
    if !matches!(obj, Val::Obj(_)) {
        return Ok(None);
    }
    let (key, default) = (arg(a, 1)?, arg(a, 2)?);
    let Val::Arr(path) = key else {
        return Ok(Some(
            crate::eval::dot(obj, key).unwrap_or_else(|| default.clone()),
        ));
    };
    let mut node = obj.clone();
    for k in path.iter() {
        match crate::eval::dot(&node, k) {
            Some(v) => node = v,
            None => return Ok(Some(default.clone())),
        }
    }
    Ok(Some(node))
}

fn object_keys(a: &[Val], _: &mut Ctx) -> Out {
    let Val::Obj(o) = arg(a, 0)? else {
        return Ok(None);
    };
    Ok(Some(Val::Set(Arc::new(o.keys().cloned().collect()))))
}

/// `b`'s values win; objects on both sides merge recursively.
fn union(a: &Val, b: &Val) -> Val {
    match (a, b) {
        (Val::Obj(x), Val::Obj(y)) => {
            let mut out: BTreeMap<Val, Val> = (**x).clone();
            for (k, v) in y.iter() {
                let merged = match out.get(k) {
                    Some(old) => union(old, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Val::Obj(Arc::new(out))
        }
        (_, b) => b.clone(),
    }
}

fn object_union(a: &[Val], _: &mut Ctx) -> Out {
    match (arg(a, 0)?, arg(a, 1)?) {
        (x @ Val::Obj(_), y @ Val::Obj(_)) => Ok(Some(union(x, y))),
        _ => Ok(None),
    }
}

fn array_concat(a: &[Val], _: &mut Ctx) -> Out {
    let (Val::Arr(x), Val::Arr(y)) = (arg(a, 0)?, arg(a, 1)?) else {
        return Ok(None);
    };
    if x.len() + y.len() > MAX_ELEMS {
        return Err(Fault::TooLarge("array"));
    }
    let mut out = Vec::with_capacity(x.len() + y.len());
    out.extend(x.iter().cloned());
    out.extend(y.iter().cloned());
    Ok(Some(Val::Arr(Arc::new(out))))
}

/// Indices are clamped to the array, as in OPA's Wasm.
fn array_slice(a: &[Val], _: &mut Ctx) -> Out {
    let Val::Arr(x) = arg(a, 0)? else {
        return Ok(None);
    };
    let (start, stop) = (int_arg(a, 1)?, int_arg(a, 2)?);
    let len = i64::try_from(x.len()).unwrap_or(i64::MAX);
    let stop = stop.clamp(0, len);
    let start = start.clamp(0, stop);
    let (start, stop) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(stop).unwrap_or(0),
    );
    Ok(Some(Val::Arr(Arc::new(
        x.get(start..stop).unwrap_or_default().to_vec(),
    ))))
}

/// `x in coll`: over an array's elements, an object's values, a set's members.
fn member_2(a: &[Val], _: &mut Ctx) -> Out {
    let (x, coll) = (arg(a, 0)?, arg(a, 1)?);
    boolean(match coll {
        Val::Arr(v) => v.contains(x),
        Val::Obj(o) => o.values().any(|v| v == x),
        Val::Set(s) => s.contains(x),
        _ => false,
    })
}

/// `k, v in coll`.
fn member_3(a: &[Val], _: &mut Ctx) -> Out {
    let (k, v, coll) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    boolean(crate::eval::dot(coll, k).is_some_and(|got| got == *v))
}

/// Integers from `a` to `b` inclusive, counting down when `b < a`.
fn numbers_range(a: &[Val], _: &mut Ctx) -> Out {
    let (x, y) = (int_arg(a, 0)?, int_arg(a, 1)?);
    let n = x.abs_diff(y);
    if n >= MAX_ELEMS as u64 {
        return Err(Fault::TooLarge("array"));
    }
    let out: Vec<Val> = if x <= y {
        (x..=y).map(Val::int).collect()
    } else {
        (y..=x).rev().map(Val::int).collect()
    };
    Ok(Some(Val::Arr(Arc::new(out))))
}
