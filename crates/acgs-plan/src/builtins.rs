//! Builtins over plan values, with the semantics of OPA's Wasm library: arithmetic on exact
//! decimals (libmpdec's results), comparisons by value, strings by Unicode code point where OPA
//! counts runes. Any builtin the host implements for the Wasm (`acgs_rego::builtins`: sprintf,
//! regex, time, crypto, ...) is called through it, so each exists once.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use acgs_rego::builtins::{BuiltinFn as HostFn, Context};

use crate::program::Kind;
use crate::value::{Num, Val};

mod graph;
mod json;
mod regex;

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
    /// Where OPA's Wasm C library aborts the evaluation (`opa_abort`) rather than failing the
    /// call: an evaluation error with the Wasm's message, never an undefined.
    Abort(&'static str),
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
pub(crate) type NativeFn = fn(&[&Val], &mut Ctx) -> Out;

/// Per-evaluation facts (the clock is fixed for one evaluation, as in OPA).
pub(crate) struct Ctx {
    pub host: Context,
    /// Results of the random builtins (`rand.intn`, `uuid.rfc4122`) by function and arguments:
    /// the same call gives the same value within one evaluation, as in OPA.
    random: std::cell::RefCell<Vec<(HostFn, Vec<Val>, Val)>>,
}

impl Ctx {
    pub(crate) fn now() -> Ctx {
        Ctx {
            host: Context::now(),
            random: std::cell::RefCell::new(Vec::new()),
        }
    }
}

/// The host builtins whose results are random, memoised per evaluation.
fn random_builtin(f: HostFn) -> bool {
    static RANDOM: std::sync::OnceLock<Vec<HostFn>> = std::sync::OnceLock::new();
    RANDOM
        .get_or_init(|| {
            ["rand.intn", "uuid.rfc4122"]
                .iter()
                .filter_map(|n| acgs_rego::builtins::lookup(n))
                .collect()
        })
        .iter()
        .any(|g| std::ptr::fn_addr_eq(f, *g))
}

/// Distinct random calls remembered per evaluation; past this a call is refused.
const MAX_RANDOM_CALLS: usize = 1 << 16;

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
    /// For a type test (`is_string`, ...), the kind of value it is true of.
    pub test: Option<Kind>,
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
        "internal.template_string" => (template_string, 1),
        "type_name" => (type_name, 1),
        "to_number" => (to_number, 1),
        "floor" => (floor, 1),
        "ceil" => (ceil, 1),
        "format_int" => (format_int, 2),
        "strings.reverse" => (strings_reverse, 1),
        "trim_left" => (trim_left, 2),
        "trim_right" => (trim_right, 2),
        "trim_prefix" => (trim_prefix, 2),
        "trim_suffix" => (trim_suffix, 2),
        "replace" => (replace, 3),
        "union" => (union_of_sets, 1),
        "intersection" => (intersection, 1),
        "array.reverse" => (array_reverse, 1),
        "object.remove" => (object_remove, 2),
        "object.filter" => (object_filter, 2),
        "object.union_n" => (object_union_n, 1),
        "walk" => (walk, 1),
        "net.cidr_contains" => (cidr_contains, 2),
        "net.cidr_intersects" => (cidr_intersects, 2),
        "bits.and" => (bits_and, 2),
        "bits.or" => (bits_or, 2),
        "bits.xor" => (bits_xor, 2),
        "bits.negate" => (bits_negate, 1),
        "bits.lsh" => (bits_lsh, 2),
        "bits.rsh" => (bits_rsh, 2),
        "base64.encode" => (base64_encode, 1),
        "base64.decode" => (base64_decode, 1),
        "base64.is_valid" => (base64_is_valid, 1),
        "base64url.encode" => (base64url_encode, 1),
        "base64url.decode" => (base64url_decode, 1),
        "json.remove" => (json::json_remove, 2),
        "json.filter" => (json::json_filter, 2),
        "json.marshal" => (json::json_marshal, 1),
        "json.unmarshal" => (json::json_unmarshal, 1),
        "json.is_valid" => (json::json_is_valid, 1),
        "regex.is_valid" => (regex::is_valid, 1),
        "regex.find_all_string_submatch_n" => (regex::find_all_string_submatch_n, 3),
        "graph.reachable" => (graph::reachable, 2),
        "array.flatten" => (array_flatten, 1),
        "internal.print" => {
            return Some(Builtin {
                imp: Impl::Void,
                arity: None,
                test: None,
            })
        }
        other => {
            return acgs_rego::builtins::lookup(other).map(|f| Builtin {
                imp: Impl::Host(f),
                arity: None,
                test: None,
            })
        }
    };
    let test = match name {
        "is_null" => Some(Kind::Null),
        "is_boolean" => Some(Kind::Bool),
        "is_number" => Some(Kind::Num),
        "is_string" => Some(Kind::Str),
        "is_array" => Some(Kind::Arr),
        "is_object" => Some(Kind::Obj),
        "is_set" => Some(Kind::Set),
        _ => None,
    };
    Some(Builtin {
        imp: Impl::Native(f),
        arity: Some(arity),
        test,
    })
}

/// A host builtin called with plan values (converted both ways).
pub(crate) fn call_host(f: HostFn, args: &[&Val], ctx: &Ctx) -> Out {
    let random = random_builtin(f);
    if random {
        let memo = ctx.random.borrow();
        if let Some((_, _, v)) = memo.iter().find(|(g, a, _)| {
            std::ptr::fn_addr_eq(f, *g)
                && a.len() == args.len()
                && a.iter().zip(args).all(|(x, y)| x == *y)
        }) {
            return Ok(Some(v.clone()));
        }
        if memo.len() >= MAX_RANDOM_CALLS {
            return Err(Fault::TooLarge("random calls"));
        }
    }
    let host: Vec<acgs_rego::Value> = args.iter().map(|v| v.to_host()).collect();
    match f(&host, &ctx.host) {
        Ok(Some(v)) => {
            let v = Val::from_host(&v);
            if random {
                let key = args.iter().map(|v| (*v).clone()).collect();
                ctx.random.borrow_mut().push((f, key, v.clone()));
            }
            Ok(Some(v))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(Fault::Undefined(e.0)),
    }
}

fn arg<'a>(args: &[&'a Val], i: usize) -> Result<&'a Val, String> {
    args.get(i)
        .copied()
        .ok_or_else(|| format!("operand {} missing", i + 1))
}

fn str_arg<'a>(args: &[&'a Val], i: usize) -> Result<&'a str, String> {
    match arg(args, i)? {
        Val::Str(s) => Ok(s),
        other => Err(format!(
            "operand {} must be string but got {}",
            i + 1,
            other.type_name()
        )),
    }
}

fn num_arg<'a>(args: &[&'a Val], i: usize) -> Result<&'a Num, String> {
    match arg(args, i)? {
        Val::Num(n) => Ok(n),
        other => Err(format!(
            "operand {} must be number but got {}",
            i + 1,
            other.type_name()
        )),
    }
}

fn int_arg(args: &[&Val], i: usize) -> Result<i64, String> {
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

fn cmp(args: &[&Val]) -> Result<Ordering, Fault> {
    Ok(arg(args, 0)?.cmp(arg(args, 1)?))
}

fn equal(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Equal)
}
fn neq(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Equal)
}
fn gt(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Greater)
}
fn gte(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Less)
}
fn lt(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? == Ordering::Less)
}
fn lte(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(cmp(a)? != Ordering::Greater)
}

fn plus(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = (num_arg(a, 0)?, num_arg(a, 1)?);
    num(spelt(x.plus(y), || Mpd::of(x)?.plus(&Mpd::of(y)?)))
}

/// Numbers subtract; sets give their difference.
fn minus(a: &[&Val], _: &mut Ctx) -> Out {
    if let (Val::Set(x), Val::Set(y)) = (arg(a, 0)?, arg(a, 1)?) {
        let d: BTreeSet<Val> = x.difference(y).cloned().collect();
        return Ok(Some(Val::Set(Arc::new(d))));
    }
    let (x, y) = (num_arg(a, 0)?, num_arg(a, 1)?);
    num(spelt(x.minus(y), || {
        Mpd::of(x)?.plus(&Mpd::of(y)?.negated())
    }))
}

fn mul(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = (num_arg(a, 0)?, num_arg(a, 1)?);
    num(spelt(x.times(y), || Mpd::of(x)?.times(&Mpd::of(y)?)))
}

/// Division by zero is undefined, as in OPA's Wasm.
fn div(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = (num_arg(a, 0)?, num_arg(a, 1)?);
    if y.is_zero() {
        return Ok(None);
    }
    let q = x.quotient(y);
    let value = q.clone();
    num(spelt(q, || Mpd::quotient_spelling(value.as_ref()?, x, y)))
}

/// Integers only; the remainder takes the dividend's sign.
fn rem(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = (int_arg(a, 0)?, int_arg(a, 1)?);
    match x.checked_rem(y) {
        Some(r) => Ok(Some(Val::int(r))),
        None => Ok(None),
    }
}

fn round(a: &[&Val], _: &mut Ctx) -> Out {
    let x = num_arg(a, 0)?;
    // An integral exponent already: libmpdec returns the operand as it is.
    num(spelt(x.round(), || Mpd::of(x).filter(|m| m.exp >= 0)))
}

fn abs(a: &[&Val], _: &mut Ctx) -> Out {
    let x = num_arg(a, 0)?;
    let zero = Num::int(0);
    let value = if *x < zero {
        zero.minus(x)
    } else {
        Some(x.clone())
    };
    num(spelt(value, || {
        Mpd::of(x).map(|m| Mpd {
            coef: m.coef.abs(),
            ..m
        })
    }))
}

/// A number as libmpdec holds it in OPA's Wasm: a coefficient and an exponent that arithmetic
/// keeps (`1.75 * 2` is `3.50`, not `3.5`). The Wasm turns a result back into a number as an
/// integer when it is integral and fits 32 bits, else as its scientific text (`3.50`,
/// `1.0e+10`), and that text is what `sprintf` and the result set show. Values stay the
/// evaluator's; this only supplies their spelling, and only while coefficients fit an `i128`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mpd {
    coef: i128,
    exp: i64,
}

/// libmpdec's precision for division in OPA's Wasm (its default context on a 32-bit target).
const DIV_PRECISION: u32 = 18;

impl Mpd {
    /// What `mpd_qset_string` makes of the number's text: `3.50` is 350e-2, `1e3` is 1e3.
    fn of(n: &Num) -> Option<Mpd> {
        match n {
            // The text of a small decimal, read back, without writing it: plain notation
            // (integers up to 21 digits, their zeros in the coefficient) or `<coef>e<exp>`,
            // whose coefficient and exponent are the decimal's own.
            Num::Small { coef, exp } if *coef % 10 != 0 || (*coef == 0 && *exp == 0) => {
                let (coef, exp) = (i128::from(*coef), i64::from(*exp));
                if exp > 0 && i64::from(digits(coef)) + exp <= 21 {
                    let scale = 10i128.checked_pow(u32::try_from(exp).ok()?)?;
                    return Some(Mpd {
                        coef: coef.checked_mul(scale)?,
                        exp: 0,
                    });
                }
                Some(Mpd { coef, exp })
            }
            other => Mpd::parse(&other.text()),
        }
    }

    /// [`Mpd::of`] from a number's text.
    fn parse(text: &str) -> Option<Mpd> {
        let (neg, rest) = text.strip_prefix('-').map_or((false, text), |r| (true, r));
        let (mantissa, e) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?.parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int}{frac}");
        if digits.is_empty() || digits.len() > 38 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let coef = digits.parse::<i128>().ok()?;
        let exp = e.checked_sub(i64::try_from(frac.len()).ok()?)?;
        Some(Mpd {
            coef: if neg { -coef } else { coef },
            exp,
        })
    }

    fn negated(self) -> Mpd {
        Mpd {
            coef: -self.coef,
            ..self
        }
    }

    /// The coefficient scaled to exponent `exp` (not above its own).
    fn at(&self, exp: i64) -> Option<i128> {
        let shift = u32::try_from(self.exp.checked_sub(exp)?).ok()?;
        self.coef.checked_mul(10i128.checked_pow(shift)?)
    }

    fn plus(&self, o: &Mpd) -> Option<Mpd> {
        let exp = self.exp.min(o.exp);
        Some(Mpd {
            coef: self.at(exp)?.checked_add(o.at(exp)?)?,
            exp,
        })
    }

    fn times(&self, o: &Mpd) -> Option<Mpd> {
        Some(Mpd {
            coef: self.coef.checked_mul(o.coef)?,
            exp: self.exp.checked_add(o.exp)?,
        })
    }

    /// The spelling of `q = x / y` (its value already computed): an exact quotient moves toward
    /// the ideal exponent `exp(x) - exp(y)` as far as the precision allows; an inexact one
    /// keeps all its digits.
    fn quotient_spelling(q: &Num, x: &Num, y: &Num) -> Option<Mpd> {
        let ideal = Mpd::of(x)?.exp.checked_sub(Mpd::of(y)?.exp)?;
        let mut m = Mpd::of(q)?.stripped();
        let exact = q.times(y).is_some_and(|back| back == *x);
        if exact {
            while m.exp > ideal && digits(m.coef) < DIV_PRECISION {
                m = Mpd {
                    coef: m.coef.checked_mul(10)?,
                    exp: m.exp - 1,
                };
            }
        } else {
            while digits(m.coef) < DIV_PRECISION {
                m = Mpd {
                    coef: m.coef.checked_mul(10)?,
                    exp: m.exp - 1,
                };
            }
        }
        Some(m)
    }

    /// Trailing zeros of the coefficient moved into the exponent.
    fn stripped(mut self) -> Mpd {
        while self.coef != 0 && self.coef % 10 == 0 {
            self.coef /= 10;
            self.exp += 1;
        }
        self
    }

    /// `mpd_to_sci(n, 0)`: plain notation while the exponent is not positive and the number not
    /// tiny, else one digit, the rest after a point, and `e` with a signed exponent.
    fn to_sci(self) -> String {
        let digits = self.coef.unsigned_abs().to_string();
        let sign = if self.coef < 0 { "-" } else { "" };
        let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
        let adjusted = self.exp.saturating_add(len - 1);
        if self.exp <= 0 && adjusted >= -6 {
            if self.exp == 0 {
                return format!("{sign}{digits}");
            }
            return acgs_rego::decimal::point_text(sign, &digits, self.exp);
        }
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let esign = if adjusted >= 0 { "+" } else { "-" };
        format!(
            "{sign}{first}{point}{rest}e{esign}{}",
            adjusted.unsigned_abs()
        )
    }

    /// `opa_bf_to_number`: an integral value within 32 bits is an integer, the rest their text.
    fn to_num(self) -> Option<Num> {
        let integral = if self.exp >= 0 {
            self.at(0)
        } else {
            let scale = 10i128.checked_pow(u32::try_from(-self.exp).ok()?)?;
            (self.coef % scale == 0).then(|| self.coef / scale)
        };
        if let Some(i) = integral.and_then(|i| i32::try_from(i).ok()) {
            return Some(Num::int(i64::from(i)));
        }
        // Where the scientific text is plain notation that the evaluator would write the same
        // way (no trailing zeros, not tiny), the number is the decimal itself: no text needed.
        if let (Ok(coef), Ok(exp)) = (i64::try_from(self.coef), i32::try_from(self.exp)) {
            let len = i64::from(digits(self.coef));
            if self.exp < 0 && self.coef % 10 != 0 && self.exp.saturating_add(len - 1) >= -6 {
                return Some(Num::Small { coef, exp });
            }
            if self.exp == 0 && len <= 21 {
                return Some(Num::int(coef));
            }
        }
        Num::parse(&self.to_sci())
    }
}

fn digits(coef: i128) -> u32 {
    coef.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1)
}

/// `value`, spelt as the Wasm would spell it when `spelling` says how and agrees on the value.
fn spelt(value: Option<Num>, spelling: impl FnOnce() -> Option<Mpd>) -> Option<Num> {
    let value = value?;
    match spelling().and_then(Mpd::to_num) {
        Some(n) if n == value => Some(n),
        _ => Some(value),
    }
}

fn sets<'a>(a: &[&'a Val]) -> Result<(&'a BTreeSet<Val>, &'a BTreeSet<Val>), Fault> {
    match (arg(a, 0)?, arg(a, 1)?) {
        (Val::Set(x), Val::Set(y)) => Ok((x, y)),
        _ => Err("operands must be sets".into()),
    }
}

fn or(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = sets(a)?;
    Ok(Some(Val::Set(Arc::new(x.union(y).cloned().collect()))))
}

fn and(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, y) = sets(a)?;
    Ok(Some(Val::Set(Arc::new(
        x.intersection(y).cloned().collect(),
    ))))
}

fn count(a: &[&Val], _: &mut Ctx) -> Out {
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

fn fold(
    a: &[&Val],
    start: i64,
    op: fn(&Num, &Num) -> Option<Num>,
    step: fn(&Mpd, &Mpd) -> Option<Mpd>,
) -> Out {
    let Some(items) = elems(arg(a, 0)?) else {
        return Ok(None);
    };
    let mut acc = Num::int(start);
    let mut spelling = Some(Mpd {
        coef: i128::from(start),
        exp: 0,
    });
    for v in items {
        match v {
            Val::Num(n) => {
                spelling = spelling.and_then(|m| step(&m, &Mpd::of(n)?));
                acc = op(&acc, n).ok_or("number out of range")?;
            }
            _ => return Ok(None),
        }
    }
    num(spelt(Some(acc), || spelling))
}

fn sum(a: &[&Val], _: &mut Ctx) -> Out {
    fold(a, 0, Num::plus, Mpd::plus)
}

fn product(a: &[&Val], _: &mut Ctx) -> Out {
    fold(a, 1, Num::times, Mpd::times)
}

/// Empty collections have no maximum or minimum.
fn max(a: &[&Val], _: &mut Ctx) -> Out {
    Ok(elems(arg(a, 0)?).and_then(|mut i| {
        i.try_fold(None::<&Val>, |m, v| Some(Some(m.map_or(v, |m| m.max(v)))))
            .flatten()
            .cloned()
    }))
}

fn min(a: &[&Val], _: &mut Ctx) -> Out {
    Ok(elems(arg(a, 0)?).and_then(|mut i| {
        i.try_fold(None::<&Val>, |m, v| Some(Some(m.map_or(v, |m| m.min(v)))))
            .flatten()
            .cloned()
    }))
}

fn sort(a: &[&Val], _: &mut Ctx) -> Out {
    let Some(items) = elems(arg(a, 0)?) else {
        return Ok(None);
    };
    let mut out: Vec<Val> = items.cloned().collect();
    out.sort();
    Ok(Some(Val::Arr(Arc::new(out))))
}

fn concat(a: &[&Val], _: &mut Ctx) -> Out {
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

fn contains(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.contains(str_arg(a, 1)?))
}

fn startswith(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.starts_with(str_arg(a, 1)?))
}

fn endswith(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(str_arg(a, 0)?.ends_with(str_arg(a, 1)?))
}

/// The code-point index of the first match, or -1.
fn indexof(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, sub) = (str_arg(a, 0)?, str_arg(a, 1)?);
    let i = match s.find(sub) {
        Some(byte) => i64::try_from(s.get(..byte).map_or(0, |p| p.chars().count())).unwrap_or(-1),
        None => -1,
    };
    Ok(Some(Val::int(i)))
}

/// Code point by code point, with Unicode's simple case mappings as OPA's Wasm (and Go's
/// `unicode.ToLower`) applies them: no final-sigma rule, no `İ` to `i̇`.
fn lower(a: &[&Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.chars().map(simple_lower).collect())
}

/// Simple mappings too: `ß` and the ligatures stay, no `SS`.
fn upper(a: &[&Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.chars().map(simple_upper).collect())
}

fn simple_lower(c: char) -> char {
    let mut m = c.to_lowercase();
    match (m.next(), m.next()) {
        (Some(l), None) => l,
        // The one full mapping of more than one code point: its simple mapping is `i`.
        _ if c == '\u{130}' => 'i',
        _ => c,
    }
}

fn simple_upper(c: char) -> char {
    let mut m = c.to_uppercase();
    match (m.next(), m.next()) {
        (Some(u), None) => u,
        // Only the full mappings differ; where a simple one exists it is the titlecase letter
        // (Greek with iota subscript), the rest have none.
        _ => match u32::from(c) {
            0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
                char::from_u32(u32::from(c) + 8).unwrap_or(c)
            }
            0x1FB3 => '\u{1FBC}',
            0x1FC3 => '\u{1FCC}',
            0x1FF3 => '\u{1FFC}',
            _ => c,
        },
    }
}

/// An empty separator splits into code points.
fn split(a: &[&Val], _: &mut Ctx) -> Out {
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
fn substring(a: &[&Val], _: &mut Ctx) -> Out {
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

fn trim(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, cut) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.trim_matches(|c| cut.contains(c)).to_owned())
}

fn trim_space(a: &[&Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.trim().to_owned())
}

/// Replacements from an object; at each position the first matching key in key order wins.
fn replace_n(a: &[&Val], _: &mut Ctx) -> Out {
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
    // The bytes a key starts with: runs of other bytes are copied at once.
    let mut starts = [false; 256];
    for (k, _) in &table {
        if let Some(b) = k
            .as_bytes()
            .first()
            .and_then(|&b| starts.get_mut(usize::from(b)))
        {
            *b = true;
        }
    }
    let bytes = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut i = 0;
    let mut prev_empty = false;
    while i <= bytes.len() {
        let mut rest = bytes.get(i..).unwrap_or_default();
        if empty.is_none() {
            let run = rest
                .iter()
                .position(|&b| starts.get(usize::from(b)).copied().unwrap_or(false))
                .unwrap_or(rest.len());
            if run > 0 {
                out.extend_from_slice(rest.get(..run).unwrap_or_default());
                i += run;
                rest = bytes.get(i..).unwrap_or_default();
            }
        }
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

fn is_array(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Arr(_)))
}
fn is_boolean(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Bool(_)))
}
fn is_null(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Null))
}
fn is_number(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Num(_)))
}
fn is_object(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Obj(_)))
}
fn is_set(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Set(_)))
}
fn is_string(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(matches!(arg(a, 0)?, Val::Str(_)))
}

/// `object.get(obj, key, default)`; an array key is a path (the empty path is `obj`).
fn object_get(a: &[&Val], _: &mut Ctx) -> Out {
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

fn object_keys(a: &[&Val], _: &mut Ctx) -> Out {
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

fn object_union(a: &[&Val], _: &mut Ctx) -> Out {
    match (arg(a, 0)?, arg(a, 1)?) {
        (x @ Val::Obj(_), y @ Val::Obj(_)) => Ok(Some(union(x, y))),
        _ => Ok(None),
    }
}

fn array_concat(a: &[&Val], _: &mut Ctx) -> Out {
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

/// One level: arrays among the elements are spliced in, other elements kept.
fn array_flatten(a: &[&Val], _: &mut Ctx) -> Out {
    let Val::Arr(x) = arg(a, 0)? else {
        return Ok(None);
    };
    if !x.iter().any(|e| matches!(e, Val::Arr(_))) {
        return Ok(Some(Val::Arr(Arc::clone(x))));
    }
    let len = x.iter().fold(0usize, |n, e| {
        n.saturating_add(match e {
            Val::Arr(inner) => inner.len(),
            _ => 1,
        })
    });
    if len > MAX_ELEMS {
        return Err(Fault::TooLarge("array"));
    }
    let mut out = Vec::with_capacity(len);
    for e in x.iter() {
        match e {
            Val::Arr(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Ok(Some(Val::Arr(Arc::new(out))))
}

/// Indices are clamped to the array, as in OPA's Wasm.
fn array_slice(a: &[&Val], _: &mut Ctx) -> Out {
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
fn member_2(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, coll) = (arg(a, 0)?, arg(a, 1)?);
    boolean(match coll {
        Val::Arr(v) => v.contains(x),
        Val::Obj(o) => o.values().any(|v| v == x),
        Val::Set(s) => s.contains(x),
        _ => false,
    })
}

/// `k, v in coll`.
fn member_3(a: &[&Val], _: &mut Ctx) -> Out {
    let (k, v, coll) = (arg(a, 0)?, arg(a, 1)?, arg(a, 2)?);
    boolean(crate::eval::dot(coll, k).is_some_and(|got| got == *v))
}

/// Integers from `a` to `b` inclusive, counting down when `b < a`.
fn numbers_range(a: &[&Val], _: &mut Ctx) -> Out {
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

// --- Builtins of OPA's Wasm C library (its semantics, not topdown's where they differ) -------

/// Rego value text as OPA's Wasm dumps it (`opa_value_dump`: `", "` and `": "` between members).
fn dump(v: &Val, out: &mut String) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => out.push_str(&n.text()),
        Val::Str(s) => acgs_rego::value::write_json_string(out, s),
        Val::Arr(a) => dump_seq(out, '[', ']', a.iter()),
        Val::Set(s) if s.is_empty() => out.push_str("set()"),
        Val::Set(s) => dump_seq(out, '{', '}', s.iter()),
        Val::Obj(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(k, out);
                out.push_str(": ");
                dump(x, out);
            }
            out.push('}');
        }
    }
}

fn dump_seq<'a>(out: &mut String, open: char, close: char, items: impl Iterator<Item = &'a Val>) {
    out.push(open);
    for (i, x) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        dump(x, out);
    }
    out.push(close);
}

/// `$"...{x}..."`: each part a string, or a set of the values of an expression (none prints
/// `<undefined>`, more than one makes the whole undefined); strings as they are, the rest dumped.
fn template_string(a: &[&Val], _: &mut Ctx) -> Out {
    let Val::Arr(parts) = arg(a, 0)? else {
        return Ok(None);
    };
    let mut out = String::new();
    for part in parts.iter() {
        let v = match part {
            Val::Set(s) if s.is_empty() => {
                out.push_str("<undefined>");
                continue;
            }
            Val::Set(s) if s.len() > 1 => return Ok(None),
            Val::Set(s) => match s.iter().next() {
                Some(v) => v,
                None => return Ok(None),
            },
            other => other,
        };
        match v {
            Val::Str(s) => out.push_str(s),
            other => dump(other, &mut out),
        }
        if out.len() > MAX_STRING_BYTES {
            return Err(Fault::TooLarge("string"));
        }
    }
    string(out)
}

fn type_name(a: &[&Val], _: &mut Ctx) -> Out {
    string(arg(a, 0)?.type_name().to_owned())
}

/// Strings must read as a float (`opa_atof64`) and keep their text as the number's spelling.
fn to_number(a: &[&Val], _: &mut Ctx) -> Out {
    Ok(match arg(a, 0)? {
        Val::Null => Some(Val::int(0)),
        Val::Bool(b) => Some(Val::int(i64::from(*b))),
        n @ Val::Num(_) => Some(n.clone()),
        Val::Str(s) => {
            let t: &str = s;
            let plain = t.trim_start_matches(['+', '-']);
            let float_ok = t.parse::<f64>().is_ok_and(f64::is_finite)
                && !plain.is_empty()
                && !plain.starts_with(|c: char| c.is_ascii_alphabetic());
            if !float_ok {
                None
            } else {
                Num::parse(t.strip_prefix('+').unwrap_or(t)).map(Val::Num)
            }
        }
        _ => None,
    })
}

/// Floor (`down`) or ceiling of a number, through its libmpdec spelling.
fn rounded(a: &[&Val], down: bool) -> Out {
    let x = num_arg(a, 0)?;
    let Some(m) = Mpd::of(x) else {
        return Ok(None);
    };
    let int = if m.exp >= 0 {
        m.at(0)
    } else {
        let scale = 10i128.checked_pow(u32::try_from(-m.exp).unwrap_or(u32::MAX));
        scale.map(|d| {
            if down {
                m.coef.div_euclid(d)
            } else {
                -(-m.coef).div_euclid(d)
            }
        })
    };
    num(int.and_then(|i| Mpd { coef: i, exp: 0 }.to_num()))
}

fn floor(a: &[&Val], _: &mut Ctx) -> Out {
    rounded(a, true)
}

fn ceil(a: &[&Val], _: &mut Ctx) -> Out {
    rounded(a, false)
}

/// The number truncated toward zero, in base 2, 8, 10 or 16 (32-bit values, as the Wasm's: it
/// aborts the evaluation on a value whose integer part does not fit, so this does too).
fn format_int(a: &[&Val], _: &mut Ctx) -> Out {
    const GET_UINT: &str = "strings: get uint failed";
    let x = num_arg(a, 0)?;
    // The base is checked first: with any other base the call is undefined, whatever the number.
    let base = int_arg(a, 1)?;
    if ![2, 8, 10, 16].contains(&base) {
        return Ok(None);
    }
    let Some(m) = Mpd::of(x) else {
        // Past the decimal emulation's range: a magnitude below one truncates to 0; any other
        // such number is far outside 32 bits.
        if *x > Num::int(-1) && *x < Num::int(1) {
            return string("0".to_owned());
        }
        return Err(Fault::Abort(GET_UINT));
    };
    let int = if m.exp >= 0 {
        m.at(0)
    } else {
        // Past 10^38 the divisor exceeds any coefficient: the integer part is 0.
        Some(
            10i128
                .checked_pow(u32::try_from(-m.exp).unwrap_or(u32::MAX))
                .map_or(0, |d| m.coef / d),
        )
    };
    let Some(w) = int.and_then(|i| i32::try_from(i).ok()) else {
        return Err(Fault::Abort(GET_UINT));
    };
    let (sign, w) = (if w < 0 { "-" } else { "" }, w.unsigned_abs());
    let digits = match base {
        2 => format!("{w:b}"),
        8 => format!("{w:o}"),
        10 => format!("{w}"),
        16 => format!("{w:x}"),
        _ => return Ok(None),
    };
    string(format!("{sign}{digits}"))
}

fn strings_reverse(a: &[&Val], _: &mut Ctx) -> Out {
    string(str_arg(a, 0)?.chars().rev().collect())
}

fn trim_left(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, cut) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.trim_start_matches(|c| cut.contains(c)).to_owned())
}

fn trim_right(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, cut) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.trim_end_matches(|c| cut.contains(c)).to_owned())
}

fn trim_prefix(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, pre) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.strip_prefix(pre).unwrap_or(s).to_owned())
}

fn trim_suffix(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, suf) = (str_arg(a, 0)?, str_arg(a, 1)?);
    string(s.strip_suffix(suf).unwrap_or(s).to_owned())
}

fn replace(a: &[&Val], _: &mut Ctx) -> Out {
    let (s, old, new) = (str_arg(a, 0)?, str_arg(a, 1)?, str_arg(a, 2)?);
    let grows = new.len().saturating_sub(old.len().max(1));
    if s.len().saturating_add(grows.saturating_mul(s.len() + 1)) > MAX_STRING_BYTES {
        return Err(Fault::TooLarge("string"));
    }
    string(s.replace(old, new))
}

/// The sets of a set of sets; `None` when any member is not a set.
fn set_members(v: &Val) -> Option<Vec<&BTreeSet<Val>>> {
    let Val::Set(s) = v else { return None };
    s.iter()
        .map(|m| match m {
            Val::Set(x) => Some(&**x),
            _ => None,
        })
        .collect()
}

fn union_of_sets(a: &[&Val], _: &mut Ctx) -> Out {
    let Some(sets) = set_members(arg(a, 0)?) else {
        return Ok(None);
    };
    let out: BTreeSet<Val> = sets.into_iter().flatten().cloned().collect();
    Ok(Some(Val::Set(Arc::new(out))))
}

fn intersection(a: &[&Val], _: &mut Ctx) -> Out {
    let Some(sets) = set_members(arg(a, 0)?) else {
        return Ok(None);
    };
    let mut it = sets.into_iter();
    let Some(first) = it.next() else {
        return Ok(Some(Val::Set(Arc::new(BTreeSet::new()))));
    };
    let mut out: BTreeSet<Val> = first.clone();
    for s in it {
        out.retain(|v| s.contains(v));
    }
    Ok(Some(Val::Set(Arc::new(out))))
}

fn array_reverse(a: &[&Val], _: &mut Ctx) -> Out {
    let Val::Arr(x) = arg(a, 0)? else {
        return Ok(None);
    };
    Ok(Some(Val::Arr(Arc::new(x.iter().rev().cloned().collect()))))
}

/// Keys given as an array, a set, or an object's keys.
fn key_list(v: &Val) -> Option<BTreeSet<Val>> {
    match v {
        Val::Arr(a) => Some(a.iter().cloned().collect()),
        Val::Set(s) => Some((**s).clone()),
        Val::Obj(o) => Some(o.keys().cloned().collect()),
        _ => None,
    }
}

fn object_remove(a: &[&Val], _: &mut Ctx) -> Out {
    let (Val::Obj(o), Some(keys)) = (arg(a, 0)?, key_list(arg(a, 1)?)) else {
        return Ok(None);
    };
    let out: BTreeMap<Val, Val> = o
        .iter()
        .filter(|(k, _)| !keys.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(Val::Obj(Arc::new(out))))
}

fn object_filter(a: &[&Val], _: &mut Ctx) -> Out {
    let (Val::Obj(o), Some(keys)) = (arg(a, 0)?, key_list(arg(a, 1)?)) else {
        return Ok(None);
    };
    let out: BTreeMap<Val, Val> = o
        .iter()
        .filter(|(k, _)| keys.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(Val::Obj(Arc::new(out))))
}

/// `object.union` over an array of objects, left to right.
fn object_union_n(a: &[&Val], ctx: &mut Ctx) -> Out {
    let Val::Arr(objs) = arg(a, 0)? else {
        return Ok(None);
    };
    let mut acc = Val::empty_object();
    for o in objs.iter() {
        if !matches!(o, Val::Obj(_)) {
            return Ok(None);
        }
        match object_union(&[&acc, o], ctx)? {
            Some(v) => acc = v,
            None => return Ok(None),
        }
    }
    Ok(Some(acc))
}

/// Every `[path, value]` pair below the value, itself first (the plan scans the array).
fn walk(a: &[&Val], _: &mut Ctx) -> Out {
    fn go(path: &mut Vec<Val>, v: &Val, out: &mut Vec<Val>) -> Result<(), Fault> {
        if out.len() >= MAX_ELEMS {
            return Err(Fault::TooLarge("array"));
        }
        out.push(Val::Arr(Arc::new(vec![
            Val::Arr(Arc::new(path.clone())),
            v.clone(),
        ])));
        let children: Vec<(Val, &Val)> = match v {
            Val::Arr(x) => x
                .iter()
                .enumerate()
                .map(|(i, c)| (Val::int(i64::try_from(i).unwrap_or(i64::MAX)), c))
                .collect(),
            Val::Obj(o) => o.iter().map(|(k, c)| (k.clone(), c)).collect(),
            Val::Set(s) => s.iter().map(|c| (c.clone(), c)).collect(),
            _ => Vec::new(),
        };
        for (k, c) in children {
            path.push(k);
            go(path, c, out)?;
            path.pop();
        }
        Ok(())
    }
    let mut out = Vec::new();
    go(&mut Vec::new(), arg(a, 0)?, &mut out)?;
    Ok(Some(Val::Arr(Arc::new(out))))
}

/// An address or a CIDR as a 128-bit range (IPv4 mapped into the IPv6 space, as Go's net does)
/// and whether its address is IPv4 (or IPv4-mapped): Go's `IPNet.Contains` never matches across
/// the two families.
fn ip_family_range(s: &str) -> Option<(bool, u128, u128)> {
    let (lo, hi) = ip_range(s)?;
    let addr = s.split_once('/').map_or(s, |(a, _)| a);
    let v4 = match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => true,
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    Some((v4, lo, hi))
}

/// An address or a CIDR as a 128-bit range (IPv4 mapped into the IPv6 space, as Go's net does).
fn ip_range(s: &str) -> Option<(u128, u128)> {
    use std::net::IpAddr;
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let (value, width) = match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 32u32),
        IpAddr::V6(v6) => (u128::from(v6), 128u32),
    };
    let prefix = match bits {
        Some(b) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
            b.parse::<u32>().ok()?
        }
        Some(_) => return None,
        None => width,
    };
    if prefix > width {
        return None;
    }
    let host_bits = width - prefix;
    let mask = if host_bits >= 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    let low = value & mask;
    Some((low, low | !mask))
}

fn cidr_contains(a: &[&Val], _: &mut Ctx) -> Out {
    let (net, other) = (str_arg(a, 0)?, str_arg(a, 1)?);
    if !net.contains('/') {
        return Ok(None);
    }
    let (Some((f1, lo, hi)), Some((f2, x, y))) = (ip_family_range(net), ip_family_range(other))
    else {
        return Ok(None);
    };
    boolean(f1 == f2 && lo <= x && y <= hi)
}

fn cidr_intersects(a: &[&Val], _: &mut Ctx) -> Out {
    let (n1, n2) = (str_arg(a, 0)?, str_arg(a, 1)?);
    if !n1.contains('/') || !n2.contains('/') {
        return Ok(None);
    }
    let (Some((f1, a1, b1)), Some((f2, a2, b2))) = (ip_family_range(n1), ip_family_range(n2))
    else {
        return Ok(None);
    };
    boolean(f1 == f2 && a1 <= b2 && a2 <= b1)
}

fn bits(a: &[&Val], f: fn(i64, i64) -> Option<i64>) -> Out {
    let (x, y) = (int_arg(a, 0)?, int_arg(a, 1)?);
    Ok(f(x, y).map(Val::int))
}

fn bits_and(a: &[&Val], _: &mut Ctx) -> Out {
    bits(a, |x, y| Some(x & y))
}

fn bits_or(a: &[&Val], _: &mut Ctx) -> Out {
    bits(a, |x, y| Some(x | y))
}

fn bits_xor(a: &[&Val], _: &mut Ctx) -> Out {
    bits(a, |x, y| Some(x ^ y))
}

fn bits_negate(a: &[&Val], _: &mut Ctx) -> Out {
    Ok(Some(Val::int(!int_arg(a, 0)?)))
}

/// Shifts by a non-negative count, without loss (OPA shifts big integers): results within 128
/// bits are exact, past that undefined.
fn bits_lsh(a: &[&Val], _: &mut Ctx) -> Out {
    let (x, n) = (int_arg(a, 0)?, int_arg(a, 1)?);
    let Ok(n) = u32::try_from(n) else {
        return Ok(None);
    };
    let x = i128::from(x);
    let Some(r) = x.checked_shl(n).filter(|r| r >> n == x) else {
        return Ok(None);
    };
    Ok(match i64::try_from(r) {
        Ok(r) => Some(Val::int(r)),
        Err(_) => Num::parse(&r.to_string()).map(Val::Num),
    })
}

fn bits_rsh(a: &[&Val], _: &mut Ctx) -> Out {
    bits(a, |x, n| {
        let n = u32::try_from(n).ok()?;
        Some(x.checked_shr(n).unwrap_or(if x < 0 { -1 } else { 0 }))
    })
}

const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding.
fn b64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let sym = |i: u32| char::from(alphabet.get((i & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// Strict base64: padded to a multiple of four (unless `unpadded` is allowed), no stray bits.
fn b64_decode(text: &str, alphabet: &[u8; 64], unpadded: bool) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    let pad = text.len() - body.len();
    if pad > 2 || (pad > 0 && text.len() % 4 != 0) || (pad == 0 && !unpadded && text.len() % 4 != 0)
    {
        return None;
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut nbits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = u32::try_from(alphabet.iter().position(|&a| a == c)?).ok()?;
        acc = (acc << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push(u8::try_from((acc >> nbits) & 0xFF).ok()?);
        }
    }
    // Leftover bits must be zero (Go's strict decoding).
    if acc & ((1 << nbits) - 1) != 0 {
        return None;
    }
    Some(out)
}

fn base64_encode(a: &[&Val], _: &mut Ctx) -> Out {
    string(b64_encode(str_arg(a, 0)?.as_bytes(), STD_ALPHABET))
}

fn base64url_encode(a: &[&Val], _: &mut Ctx) -> Out {
    string(b64_encode(str_arg(a, 0)?.as_bytes(), URL_ALPHABET))
}

/// Decoded bytes as a string: each byte that is not part of valid UTF-8 becomes U+FFFD, as Go
/// reads such a string rune by rune (so `count` agrees with OPA's).
fn decoded(bytes: Option<Vec<u8>>) -> Out {
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    match String::from_utf8(bytes) {
        Ok(s) => string(s),
        Err(e) => {
            let bytes = e.into_bytes();
            let mut out = String::with_capacity(bytes.len() + 8);
            for chunk in bytes.utf8_chunks() {
                out.push_str(chunk.valid());
                out.extend(std::iter::repeat_n('\u{FFFD}', chunk.invalid().len()));
            }
            string(out)
        }
    }
}

fn base64_decode(a: &[&Val], _: &mut Ctx) -> Out {
    decoded(b64_decode(str_arg(a, 0)?, STD_ALPHABET, false))
}

fn base64url_decode(a: &[&Val], _: &mut Ctx) -> Out {
    decoded(b64_decode(str_arg(a, 0)?, URL_ALPHABET, true))
}

fn base64_is_valid(a: &[&Val], _: &mut Ctx) -> Out {
    boolean(b64_decode(str_arg(a, 0)?, STD_ALPHABET, false).is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    /// Numbers read and written without text agree with the text they stand for.
    #[test]
    fn spelling_without_text_matches_spelling_through_text() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut coefs: Vec<i64> = vec![0, 1, -1, 7, 10, 99, 100, 250, i64::MAX, i64::MIN + 1];
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = u32::try_from(x % 19).unwrap();
            let c = i64::try_from((x >> 8) % 10u64.pow(digits)).unwrap();
            coefs.push(if x & 1 == 0 { c } else { -c });
        }
        for &coef in &coefs {
            for exp in [
                -30, -26, -25, -24, -21, -20, -8, -7, -6, -5, -2, -1, 0, 1, 2, 3, 5, 18, 19, 20,
                21, 22, 40,
            ] {
                let Some(d) = acgs_rego::decimal::Dec::from_parts(i128::from(coef), exp) else {
                    continue;
                };
                let n = Num::from_dec(d);
                assert_eq!(Mpd::of(&n), Mpd::parse(&n.text()), "{coef}e{exp}");
                // Any coefficient and exponent, trailing zeros kept, back to a number.
                let m = Mpd {
                    coef: i128::from(coef),
                    exp: i64::from(exp),
                };
                let through_text = Num::parse(&m.to_sci());
                let got = m.to_num();
                let integral_i32 = m.exp >= 0 && m.at(0).is_some_and(|i| i32::try_from(i).is_ok())
                    || (m.exp < 0
                        && 10i128
                            .checked_pow(u32::try_from(-m.exp).unwrap())
                            .is_some_and(|s| m.coef % s == 0 && i32::try_from(m.coef / s).is_ok()));
                if !integral_i32 {
                    assert_eq!(
                        got.as_ref().map(Num::text),
                        through_text.as_ref().map(Num::text),
                        "{coef}e{exp}"
                    );
                    assert_eq!(got, through_text, "{coef}e{exp}");
                }
            }
        }
    }
}
