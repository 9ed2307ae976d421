//! `json.verify_schema` and `json.match_schema`: JSON Schema drafts 4, 6 and 7.
//!
//! OPA validates with its vendored fork of gojsonschema, and policies inspect the error objects
//! it produces (`{"error", "type", "field", "desc"}`), so this validator follows that library's
//! behaviour rather than the letter of the specification: the draft defaults to a hybrid of 4, 6
//! and 7 unless `$schema` names one, `$ref` replaces its sibling keywords, sub-schemas are
//! checked in the library's order, and `anyOf`/`oneOf` failures report the errors of the
//! best-scoring branch. Where gojsonschema walks a Go map (random order), keys are visited in
//! sorted order here so results are reproducible.
//!
//! Remote `$ref`s are never fetched: the host has no network, so they fail to compile with the
//! message OPA gives when `allow_net` forbids the host.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};
use regex::Regex;

use super::{arg, err, push_go_json_string, to_json_value, BuiltinResult, Context};
use crate::value::{Number, Value};

/// Nesting limit for documents, schemas and `$ref` chains; deeper input is rejected rather than
/// risking the host's stack.
const MAX_DEPTH: usize = 256;

// ---------------------------------------------------------------------------------------------
// Builtins

pub(super) fn verify_schema(args: &[Value], _: &Context) -> BuiltinResult {
    let outcome = load(arg(args, 1)?).and_then(|doc| Schema::compile(&doc).map(|_| ()));
    Ok(Some(match outcome {
        Ok(()) => Value::Array(vec![Value::Bool(true), Value::Null]),
        Err(e) => Value::Array(vec![
            Value::Bool(false),
            Value::String(format!("jsonschema: {e}")),
        ]),
    }))
}

pub(super) fn match_schema(args: &[Value], _: &Context) -> BuiltinResult {
    let document = load(arg(args, 1)?).or_else(err)?;
    let schema_doc = load(arg(args, 2)?).or_else(err)?;
    let schema = Schema::compile(&schema_doc).or_else(err)?;
    let result = schema.validate(&document).or_else(err)?;
    let valid = result.errors.is_empty();
    let errors = result
        .errors
        .into_iter()
        .map(|e| {
            let mut o = BTreeMap::new();
            o.insert(
                Value::str("error"),
                Value::String(format!("{}: {}", e.field, e.desc)),
            );
            o.insert(Value::str("type"), Value::str(e.kind));
            o.insert(Value::str("field"), Value::String(e.field));
            o.insert(Value::str("desc"), Value::String(e.desc));
            Value::Object(o)
        })
        .collect();
    Ok(Some(Value::Array(vec![
        Value::Bool(valid),
        Value::Array(errors),
    ])))
}

// ---------------------------------------------------------------------------------------------
// JSON with numbers kept as written (gojsonschema decodes with `UseNumber`)

#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(BTreeMap<String, J>),
}

/// A string operand is raw JSON text; an object or array is converted as `ast.JSON` would.
fn load(v: &Value) -> Result<J, String> {
    match v {
        Value::String(s) => parse_json(s).ok_or_else(|| "invalid JSON string".to_owned()),
        Value::Object(_) | Value::Array(_) => from_value(&to_json_value(v), 0),
        _ => Err("wrong type, expected string or object".to_owned()),
    }
}

fn from_value(v: &Value, depth: usize) -> Result<J, String> {
    if depth > MAX_DEPTH {
        return Err("document nested too deeply".to_owned());
    }
    Ok(match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => J::Num(match n {
            Number::Int(i) => i.to_string(),
            Number::Big(s) => s.clone(),
            Number::Float(f) => super::number_text(&Number::Float(*f)),
        }),
        Value::String(s) => J::Str(s.clone()),
        Value::Array(a) => J::Arr(
            a.iter()
                .map(|x| from_value(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Set(s) => J::Arr(
            s.iter()
                .map(|x| from_value(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut m = BTreeMap::new();
            for (k, val) in o {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => other.to_json_string(),
                };
                m.insert(key, from_value(val, depth + 1)?);
            }
            J::Obj(m)
        }
    })
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

/// Strict RFC 8259 parsing, as Go's `json.Valid` accepts.
fn parse_json(text: &str) -> Option<J> {
    let mut p = JsonParser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

impl JsonParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str, v: J) -> Option<J> {
        let end = self.i.checked_add(word.len())?;
        (self.s.get(self.i..end)? == word.as_bytes()).then(|| {
            self.i = end;
            v
        })
    }

    fn value(&mut self, depth: usize) -> Option<J> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'n' => self.lit("null", J::Null),
            b't' => self.lit("true", J::Bool(true)),
            b'f' => self.lit("false", J::Bool(false)),
            b'"' => self.string().map(J::Str),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(J::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(J::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(J::Obj(m));
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    self.ws();
                    match self.peek()? {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(J::Obj(m));
                        }
                        _ => return None,
                    }
                }
            }
            _ => self.number().map(J::Num),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(String::from_utf8_lossy(self.s.get(start..self.i)?).into_owned())
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.i.checked_add(4)?;
        let h = std::str::from_utf8(self.s.get(self.i..end)?).ok()?;
        let v = u32::from_str_radix(h, 16).ok()?;
        self.i = end;
        Some(v)
    }

    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi) {
                                // A lone high surrogate decodes to U+FFFD, as in Go.
                                let save = self.i;
                                let pair = if self.s.get(self.i..self.i.saturating_add(2))
                                    == Some(b"\\u")
                                {
                                    self.i += 2;
                                    self.hex4().filter(|lo| (0xDC00..0xE000).contains(lo))
                                } else {
                                    None
                                };
                                match pair {
                                    Some(lo) => char::from_u32(
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                                    )
                                    .unwrap_or('\u{FFFD}'),
                                    None => {
                                        self.i = save;
                                        '\u{FFFD}'
                                    }
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{FFFD}')
                            }
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exact decimal arithmetic (gojsonschema compares numbers as big.Rat)

#[derive(Debug, Clone)]
struct Dec {
    mant: BigInt,
    exp: i64,
}

/// Exponents beyond this are not expanded into digits; comparisons decide them by magnitude.
const MAX_SCALE: i64 = 4000;

impl Dec {
    fn parse(text: &str) -> Option<Dec> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (num, exp_part) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, Some(rest.get(i + 1..)?)),
            None => (rest, None),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        let digits = format!("{int_part}{frac_part}");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut exp: i64 = match exp_part {
            Some(e) => {
                let (eneg, edigits) = match e.strip_prefix('-') {
                    Some(d) => (true, d),
                    None => (false, e.strip_prefix('+').unwrap_or(e)),
                };
                if edigits.is_empty() || !edigits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let mag = edigits
                    .parse::<i64>()
                    .unwrap_or(i64::MAX / 4)
                    .min(i64::MAX / 4);
                if eneg {
                    -mag
                } else {
                    mag
                }
            }
            None => 0,
        };
        exp = exp.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
        let mut mant: BigInt = digits.parse().ok()?;
        if neg {
            mant = -mant;
        }
        let mut d = Dec { mant, exp };
        d.normalize();
        Some(d)
    }

    fn normalize(&mut self) {
        if self.mant.is_zero() {
            self.exp = 0;
            return;
        }
        let ten = BigInt::from(10);
        while (&self.mant % &ten).is_zero() {
            self.mant /= &ten;
            self.exp = self.exp.saturating_add(1);
        }
    }

    fn is_int(&self) -> bool {
        self.mant.is_zero() || self.exp >= 0
    }

    fn digit_count(&self) -> i64 {
        i64::try_from(self.mant.abs().to_string().len()).unwrap_or(i64::MAX / 4)
    }

    fn pow10(n: i64) -> BigInt {
        num_traits::pow(BigInt::from(10), usize::try_from(n).unwrap_or(0))
    }

    fn cmp(&self, other: &Dec) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let (sa, sb) = (self.mant.sign(), other.mant.sign());
        if sa != sb {
            return sa.cmp(&sb);
        }
        if self.mant.is_zero() {
            return Ordering::Equal;
        }
        let neg = self.mant.is_negative();
        let ma = self.digit_count().saturating_add(self.exp);
        let mb = other.digit_count().saturating_add(other.exp);
        let mag = if ma != mb {
            ma.cmp(&mb)
        } else {
            // Same leading-digit position, so the exponents differ by at most the digit counts.
            let e = self.exp.min(other.exp);
            let a = self.mant.abs() * Dec::pow10(self.exp - e);
            let b = other.mant.abs() * Dec::pow10(other.exp - e);
            a.cmp(&b)
        };
        if neg {
            mag.reverse()
        } else {
            mag
        }
    }

    /// Whether `self / divisor` is an integer (`divisor` is positive).
    fn is_multiple_of(&self, divisor: &Dec) -> bool {
        if self.mant.is_zero() {
            return true;
        }
        let a = self.mant.abs();
        let mut b = divisor.mant.abs();
        let d = self.exp.saturating_sub(divisor.exp);
        if d >= 0 {
            // b | a * 10^d: cancel up to d factors of 2 and of 5 from b, then test.
            for p in [2u32, 5] {
                let pb = BigInt::from(p);
                let mut n = 0i64;
                while n < d && (&b % &pb).is_zero() {
                    b /= &pb;
                    n += 1;
                }
            }
            (a % b).is_zero()
        } else {
            let shift = -d;
            if shift > self.digit_count().saturating_add(1) || shift > MAX_SCALE {
                return false;
            }
            (a % (b * Dec::pow10(shift))).is_zero()
        }
    }

    fn to_f64(&self) -> f64 {
        format!("{}e{}", self.mant, self.exp)
            .parse::<f64>()
            .unwrap_or(f64::NAN)
    }
}

/// How Go prints a `*big.Float` made from the bound (`%v`): the shortest digits that identify
/// it, in `%g` style with exponents from 1e+06 and below 1e-04.
fn go_big_float_text(d: &Dec) -> String {
    if d.mant.is_zero() {
        return "0".to_owned();
    }
    let mut digits = d.mant.abs().to_string();
    let mut x = d
        .exp
        .saturating_add(i64::try_from(digits.len()).unwrap_or(0))
        - 1;
    if digits.len() > 19 {
        // Beyond a 64-bit mantissa Go rounds; f64's shortest form is the nearest we keep.
        let sci = format!("{:e}", d.to_f64().abs());
        let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
        digits = m.chars().filter(char::is_ascii_digit).collect();
        x = e.parse().unwrap_or(0);
    }
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if d.mant.is_negative() {
        out.push('-');
    }
    if !(-4..6).contains(&x) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let _ = write!(out, "e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    } else if x < 0 {
        out.push_str("0.");
        for _ in 0..(-x - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let dp = usize::try_from(x + 1).unwrap_or(0);
        if digits.len() <= dp {
            out.push_str(digits);
            for _ in digits.len()..dp {
                out.push('0');
            }
        } else {
            let (a, b) = digits.split_at(dp);
            out.push_str(a);
            out.push('.');
            out.push_str(b);
        }
    }
    out
}

/// gojsonschema's `marshalWithoutNumber`: JSON text after a round trip through float64, used to
/// compare values for `const`, `enum` and `uniqueItems`.
fn canonical_json(v: &J) -> String {
    let mut out = String::new();
    write_canonical(&mut out, v);
    out
}

fn write_canonical(out: &mut String, v: &J) {
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(t) => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => out.push_str(&super::go_json_float(f)),
            _ => out.push_str(t),
        },
        J::Str(s) => push_go_json_string(out, s),
        J::Arr(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, x);
            }
            out.push(']');
        }
        J::Obj(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_go_json_string(out, k);
                out.push(':');
                write_canonical(out, x);
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// References

/// A parsed URI reference, enough of RFC 3986 to resolve `$id` and `$ref` against each other.
#[derive(Debug, Clone, Default)]
struct Uri {
    scheme: Option<String>,
    authority: Option<String>,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

impl Uri {
    fn parse(s: &str) -> Uri {
        let (rest, fragment) = match s.split_once('#') {
            Some((a, f)) => (a, Some(percent_decode(f))),
            None => (s, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q.to_owned())),
            None => (rest, None),
        };
        let mut scheme = None;
        let mut rest = rest;
        if let Some(i) = rest.find(':') {
            let cand = rest.get(..i).unwrap_or_default();
            let valid = cand.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && cand
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if valid {
                scheme = Some(cand.to_ascii_lowercase());
                rest = rest.get(i + 1..).unwrap_or_default();
            }
        }
        let mut authority = None;
        if let Some(a) = rest.strip_prefix("//") {
            let end = a.find('/').unwrap_or(a.len());
            authority = Some(a.get(..end).unwrap_or_default().to_owned());
            rest = a.get(end..).unwrap_or_default();
        }
        Uri {
            scheme,
            authority,
            path: rest.to_owned(),
            query,
            fragment,
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        if let Some(s) = &self.scheme {
            out.push_str(s);
            out.push(':');
        }
        if let Some(a) = &self.authority {
            out.push_str("//");
            out.push_str(a);
        }
        out.push_str(&self.path);
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        // Go's url.URL drops an empty fragment when printing.
        if let Some(f) = self.fragment.as_deref().filter(|f| !f.is_empty()) {
            out.push('#');
            out.push_str(f);
        }
        out
    }

    fn without_fragment(&self) -> Uri {
        Uri {
            fragment: None,
            ..self.clone()
        }
    }

    /// Go's `base.ResolveReference(child)`, with the base's fragment ignored.
    fn resolve(&self, child: &Uri) -> Uri {
        let opaque =
            |u: &Uri| u.scheme.is_some() && u.authority.is_none() && !u.path.starts_with('/');
        if child.scheme.is_some() || child.authority.is_some() {
            if opaque(child) {
                return child.clone();
            }
            return Uri {
                scheme: child.scheme.clone().or_else(|| self.scheme.clone()),
                path: go_resolve_path(&child.path, ""),
                ..child.clone()
            };
        }
        let keep_query = child.path.is_empty() && child.query.is_none();
        if child.path.is_empty() && opaque(self) {
            return Uri {
                query: if keep_query {
                    self.query.clone()
                } else {
                    child.query.clone()
                },
                fragment: child.fragment.clone(),
                ..self.clone()
            };
        }
        Uri {
            scheme: self.scheme.clone(),
            authority: self.authority.clone(),
            path: go_resolve_path(&self.path, &child.path),
            query: if keep_query {
                self.query.clone()
            } else {
                child.query.clone()
            },
            fragment: child.fragment.clone(),
        }
    }

    fn is_canonical(&self) -> bool {
        self.scheme.is_some() && self.authority.as_deref().is_some_and(|a| !a.is_empty())
    }
}

/// Go's `url.resolvePath`: merges the paths and removes dot segments; a non-empty result always
/// starts with '/'.
fn go_resolve_path(base: &str, reference: &str) -> String {
    let full = if reference.is_empty() {
        base.to_owned()
    } else if !reference.starts_with('/') {
        let dir = base
            .rfind('/')
            .map_or("", |i| base.get(..=i).unwrap_or_default());
        format!("{dir}{reference}")
    } else {
        reference.to_owned()
    };
    if full.is_empty() {
        return full;
    }
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = full.split('/').collect();
    for part in &parts {
        match *part {
            "." => {}
            ".." => {
                segs.pop();
            }
            p => segs.push(p),
        }
    }
    let mut out = String::from("/");
    out.push_str(segs.join("/").trim_start_matches('/'));
    if matches!(parts.last(), Some(&"." | &"..")) && !out.ends_with('/') {
        out.push('/');
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 6901 lookup with gojsonpointer's error wording.
fn pointer_get<'a>(doc: &'a J, fragment: &str) -> Result<&'a J, String> {
    // A fragment that is not a pointer (a location-independent id the pool lacks) is ignored,
    // leaving the whole document, as gojsonreference does.
    let Some(rest) = fragment.strip_prefix('/') else {
        return Ok(doc);
    };
    let mut node = doc;
    for token in rest.split('/') {
        node = match node {
            J::Obj(m) => {
                let key = token.replace("~1", "/").replace("~0", "~");
                m.get(&key)
                    .ok_or_else(|| format!("Object has no key '{key}'"))?
            }
            J::Arr(a) => {
                let idx: i64 = token
                    .parse()
                    .map_err(|_| format!("Invalid array index '{token}'"))?;
                usize::try_from(idx)
                    .ok()
                    .and_then(|i| a.get(i))
                    .ok_or_else(|| format!("Out of bound array[0,{}] index '{idx}'", a.len()))?
            }
            _ => return Err(format!("Invalid token reference '{token}'")),
        };
    }
    Ok(node)
}

// ---------------------------------------------------------------------------------------------
// Compiled schema

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Draft {
    D4 = 4,
    D6 = 6,
    D7 = 7,
    /// gojsonschema's default when `$schema` names no known draft: accepts all three.
    Hybrid = 1000,
}

fn draft_for(url: &str) -> Option<Draft> {
    match url {
        "http://json-schema.org/draft-04/schema" => Some(Draft::D4),
        "http://json-schema.org/draft-06/schema" => Some(Draft::D6),
        "http://json-schema.org/draft-07/schema" => Some(Draft::D7),
        _ => None,
    }
}

/// The draft a document declares with `$schema`, if any.
fn detect_draft(doc: &J) -> Result<Option<Draft>, String> {
    match doc {
        J::Bool(_) => Ok(None),
        J::Obj(m) => match m.get("$schema") {
            None => Ok(None),
            Some(J::Str(s)) => Ok(draft_for(&Uri::parse(s).text())),
            Some(_) => Err("$schema must be of type string".to_owned()),
        },
        _ => Err("schema is invalid".to_owned()),
    }
}

#[derive(Debug, Clone, Default)]
enum Additional {
    #[default]
    Unset,
    Bool(bool),
    Schema(usize),
}

#[derive(Debug, Clone)]
enum Dependency {
    Keys(Vec<String>),
    Schema(usize),
}

#[derive(Debug, Clone)]
struct Sub {
    draft: Draft,
    pass: Option<bool>,
    types: Vec<String>,
    ref_schema: Option<usize>,
    properties: Vec<(String, usize)>,
    items: Vec<usize>,
    items_single: bool,
    multiple_of: Option<Dec>,
    maximum: Option<Dec>,
    exclusive_maximum: Option<Dec>,
    minimum: Option<Dec>,
    exclusive_minimum: Option<Dec>,
    min_length: Option<i64>,
    max_length: Option<i64>,
    pattern: Option<(Regex, String)>,
    format: String,
    min_properties: Option<i64>,
    max_properties: Option<i64>,
    required: Vec<String>,
    dependencies: BTreeMap<String, Dependency>,
    additional_properties: Additional,
    pattern_properties: Vec<(Regex, usize)>,
    property_names: Option<usize>,
    min_items: Option<i64>,
    max_items: Option<i64>,
    unique_items: bool,
    contains: Option<usize>,
    additional_items: Additional,
    const_: Option<String>,
    enum_: Option<Vec<String>>,
    one_of: Vec<usize>,
    any_of: Vec<usize>,
    all_of: Vec<usize>,
    not: Option<usize>,
    if_: Option<usize>,
    then: Option<usize>,
    else_: Option<usize>,
}

impl Sub {
    fn new(draft: Draft) -> Sub {
        Sub {
            draft,
            pass: None,
            types: Vec::new(),
            ref_schema: None,
            properties: Vec::new(),
            items: Vec::new(),
            items_single: false,
            multiple_of: None,
            maximum: None,
            exclusive_maximum: None,
            minimum: None,
            exclusive_minimum: None,
            min_length: None,
            max_length: None,
            pattern: None,
            format: String::new(),
            min_properties: None,
            max_properties: None,
            required: Vec::new(),
            dependencies: BTreeMap::new(),
            additional_properties: Additional::Unset,
            pattern_properties: Vec::new(),
            property_names: None,
            min_items: None,
            max_items: None,
            unique_items: false,
            contains: None,
            additional_items: Additional::Unset,
            const_: None,
            enum_: None,
            one_of: Vec::new(),
            any_of: Vec::new(),
            all_of: Vec::new(),
            not: None,
            if_: None,
            then: None,
            else_: None,
        }
    }

    fn types_text(&self) -> String {
        match self.types.as_slice() {
            [] => "Undefined".to_owned(),
            [one] => one.clone(),
            many => format!("[{}]", many.join(",")),
        }
    }
}

struct PoolDoc {
    doc: J,
    draft: Option<Draft>,
}

struct Schema {
    subs: Vec<Sub>,
    root: usize,
}

struct Compiler {
    subs: Vec<Sub>,
    /// Documents by absolute reference (`$id`s and the root, which is keyed by "").
    pool: BTreeMap<String, PoolDoc>,
    /// Sub-schemas already built for a `$ref` target, so recursive references terminate.
    ref_pool: BTreeMap<String, usize>,
}

const JSON_TYPES: [&str; 7] = [
    "array", "boolean", "integer", "number", "null", "object", "string",
];

fn invalid_type(expected: &str, given: &str) -> String {
    format!("Invalid type. Expected: {expected}, given: {given}")
}

fn must_be_integer(v: &J) -> Option<i64> {
    let J::Num(t) = v else { return None };
    let d = Dec::parse(t)?;
    if !d.is_int() {
        return None;
    }
    if d.exp > 19 {
        return None;
    }
    (d.mant * Dec::pow10(d.exp)).to_i64()
}

fn must_be_number(v: &J) -> Option<Dec> {
    match v {
        J::Num(t) => Dec::parse(t),
        _ => None,
    }
}

fn get_str<'a>(m: &'a BTreeMap<String, J>, key: &str) -> Result<Option<&'a str>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(J::Str(s)) => Ok(Some(s)),
        Some(_) => Err(invalid_type("string", key)),
    }
}

fn get_slice<'a>(m: &'a BTreeMap<String, J>, key: &str) -> Result<Option<&'a [J]>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(J::Arr(a)) => Ok(Some(a)),
        Some(_) => Err(format!("{key} must be of an array")),
    }
}

fn compile_regex(p: &str) -> Option<Regex> {
    regex::RegexBuilder::new(p).size_limit(8 << 20).build().ok()
}

impl Schema {
    fn compile(doc: &J) -> Result<Schema, String> {
        let mut c = Compiler {
            subs: Vec::new(),
            pool: BTreeMap::new(),
            ref_pool: BTreeMap::new(),
        };
        let mut doc = doc.clone();
        let draft = detect_draft(&doc)?;
        c.register_refs(&mut doc, &Uri::default(), draft, 0)?;
        c.pool.insert(
            String::new(),
            PoolDoc {
                doc: doc.clone(),
                draft,
            },
        );
        let root_draft = draft.unwrap_or(Draft::Hybrid);
        let root = c.new_sub(root_draft);
        c.parse(&doc, root, true, 0)?;
        Ok(Schema { subs: c.subs, root })
    }
}

impl Compiler {
    fn new_sub(&mut self, draft: Draft) -> usize {
        self.subs.push(Sub::new(draft));
        self.subs.len() - 1
    }

    fn child(&mut self, parent: usize) -> usize {
        let draft = self.subs.get(parent).map_or(Draft::Hybrid, |s| s.draft);
        self.new_sub(draft)
    }

    /// gojsonschema's reference pre-pass: registers each `$id` scope and rewrites every `$ref`
    /// into an absolute reference.
    fn register_refs(
        &mut self,
        node: &mut J,
        base: &Uri,
        draft: Option<Draft>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("schema nested too deeply".to_owned());
        }
        match node {
            J::Arr(a) => {
                for v in a {
                    self.register_refs(v, base, draft, depth + 1)?;
                }
            }
            J::Obj(m) => {
                let key_id = if m.contains_key("id") { "id" } else { "$id" };
                let mut local = base.clone();
                if let Some(J::Str(id)) = m.get(key_id) {
                    local = base.resolve(&Uri::parse(id));
                    let key = local.text();
                    if self.pool.contains_key(&key) {
                        return Err(format!("Reference already exists: \"{key}\""));
                    }
                    self.pool.insert(
                        key,
                        PoolDoc {
                            doc: J::Obj(m.clone()),
                            draft,
                        },
                    );
                }
                if let Some(J::Str(r)) = m.get("$ref") {
                    let abs = local.resolve(&Uri::parse(r)).text();
                    m.insert("$ref".to_owned(), J::Str(abs));
                }
                for (k, v) in m.iter_mut() {
                    match k.as_str() {
                        "const" | "enum" => {}
                        "properties" | "dependencies" | "patternProperties" => {
                            if let J::Obj(children) = v {
                                for cv in children.values_mut() {
                                    self.register_refs(cv, &local, draft, depth + 1)?;
                                }
                            }
                        }
                        _ => self.register_refs(v, &local, draft, depth + 1)?,
                    }
                }
                // The pool copy was taken before nested `$ref`s were rewritten; refresh it.
                if let Some(J::Str(_)) = m.get(key_id) {
                    let key = local.text();
                    if let Some(entry) = self.pool.get_mut(&key) {
                        entry.doc = J::Obj(m.clone());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn get_document(&self, reference: &str) -> Result<(J, Option<Draft>), String> {
        if let Some(pd) = self.pool.get(reference) {
            return Ok((pd.doc.clone(), pd.draft));
        }
        let uri = Uri::parse(reference);
        let base = uri.without_fragment().text();
        if let Some(pd) = self.pool.get(&base) {
            let node = pointer_get(&pd.doc, uri.fragment.as_deref().unwrap_or(""))?;
            return Ok((node.clone(), pd.draft));
        }
        if !uri.is_canonical() {
            return Err(format!("Reference {reference} must be canonical"));
        }
        Err(format!("remote reference loading disabled: {reference}"))
    }

    fn parse_child(&mut self, v: &J, parent: usize, depth: usize) -> Result<usize, String> {
        let id = self.child(parent);
        self.parse(v, id, false, depth + 1)?;
        Ok(id)
    }

    fn set<F: FnOnce(&mut Sub)>(&mut self, id: usize, f: F) {
        if let Some(s) = self.subs.get_mut(id) {
            f(s);
        }
    }

    fn draft(&self, id: usize) -> Draft {
        self.subs.get(id).map_or(Draft::Hybrid, |s| s.draft)
    }

    #[allow(clippy::too_many_lines)] // one keyword after another, in gojsonschema's order
    fn parse(&mut self, node: &J, cur: usize, is_root: bool, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("schema nested too deeply".to_owned());
        }
        let draft = self.draft(cur);
        if draft >= Draft::D6 {
            if let J::Bool(b) = node {
                let b = *b;
                self.set(cur, |s| s.pass = Some(b));
                return Ok(());
            }
        }
        let J::Obj(m) = node else {
            return Err("Expected: Valid Schema, given: Invalid JSON".to_owned());
        };
        let key_id = match draft {
            Draft::D4 => "id",
            Draft::Hybrid if m.contains_key("id") => "id",
            _ => "$id",
        };
        get_str(m, key_id)?;
        let _ = is_root;

        if let Some(defs) = m.get("definitions") {
            let J::Obj(defs) = defs else {
                return Err(invalid_type("Array Of Schemas", "definitions"));
            };
            for dv in defs.values() {
                match dv {
                    J::Bool(_) | J::Obj(_) => {
                        self.parse_child(dv, cur, depth)?;
                    }
                    _ => return Err(invalid_type("Array Of Schemas", "definitions")),
                }
            }
        }
        get_str(m, "title")?;
        get_str(m, "description")?;

        if let Some(r) = get_str(m, "$ref")? {
            let r = r.to_owned();
            if let Some(&target) = self.ref_pool.get(&r) {
                self.set(cur, |s| s.ref_schema = Some(target));
            } else {
                let target = self.child(cur);
                self.ref_pool.insert(r.clone(), target);
                let (doc, doc_draft) = self.get_document(&r)?;
                if let Some(d) = doc_draft {
                    self.set(target, |s| s.draft = d);
                }
                if !matches!(doc, J::Bool(_) | J::Obj(_)) {
                    return Err("Valid Schema must be of type object".to_owned());
                }
                self.parse(&doc, target, false, depth + 1)?;
                self.set(cur, |s| s.ref_schema = Some(target));
                return Ok(());
            }
        }

        if let Some(t) = m.get("type") {
            let names: Vec<&J> = match t {
                J::Str(_) => vec![t],
                J::Arr(a) => a.iter().collect(),
                _ => return Err(invalid_type("type", "string/Array Of Strings")),
            };
            let mut types: Vec<String> = Vec::new();
            for n in names {
                let J::Str(n) = n else {
                    return Err(invalid_type("type", "string/Array Of Strings"));
                };
                if !JSON_TYPES.contains(&n.as_str()) {
                    return Err(format!(
                        "has a primitive type that is NOT VALID -- given: /{n}/ Expected valid values are:[{}]",
                        JSON_TYPES.join(" ")
                    ));
                }
                if types.contains(n) {
                    return Err(format!("{n} type is duplicated"));
                }
                types.push(n.clone());
            }
            self.set(cur, |s| s.types = types);
        }

        if let Some(props) = m.get("properties") {
            let J::Obj(props) = props else {
                return Err("Properties must be of type object".to_owned());
            };
            for (k, v) in props {
                let child = self.parse_child(v, cur, depth)?;
                let k = k.clone();
                self.set(cur, |s| s.properties.push((k, child)));
            }
        }

        if let Some(ap) = m.get("additionalProperties") {
            let value = match ap {
                J::Bool(b) => Additional::Bool(*b),
                J::Obj(_) => Additional::Schema(self.parse_child(ap, cur, depth)?),
                _ => return Err(invalid_type("boolean/Valid Schema", "additionalProperties")),
            };
            self.set(cur, |s| s.additional_properties = value);
        }

        if let Some(pp) = m.get("patternProperties") {
            let J::Obj(pp) = pp else {
                return Err(invalid_type("Valid Schema", "patternProperties"));
            };
            for (k, v) in pp {
                let re = compile_regex(k).ok_or_else(|| format!("Invalid regex pattern '{k}'"))?;
                let child = self.parse_child(v, cur, depth)?;
                self.set(cur, |s| s.pattern_properties.push((re, child)));
            }
        }

        if draft >= Draft::D6 {
            if let Some(pn) = m.get("propertyNames") {
                if !matches!(pn, J::Bool(_) | J::Obj(_)) {
                    return Err(invalid_type("Valid Schema", "patternProperties"));
                }
                let child = self.parse_child(pn, cur, depth)?;
                self.set(cur, |s| s.property_names = Some(child));
            }
        }

        if let Some(deps) = m.get("dependencies") {
            let J::Obj(deps) = deps else {
                return Err("dependencies must be of type object".to_owned());
            };
            for (k, v) in deps {
                let dep = match v {
                    J::Arr(a) => {
                        let mut keys = Vec::new();
                        for x in a {
                            let J::Str(s) = x else {
                                return Err(
                                    "Dependency must be of type Schema Or Array Of Strings"
                                        .to_owned(),
                                );
                            };
                            keys.push(s.clone());
                        }
                        if keys.is_empty() {
                            continue;
                        }
                        Dependency::Keys(keys)
                    }
                    J::Bool(_) | J::Obj(_) => Dependency::Schema(self.parse_child(v, cur, depth)?),
                    _ => {
                        return Err(
                            "Dependency must be of type Schema Or Array Of Strings".to_owned()
                        )
                    }
                };
                let k = k.clone();
                self.set(cur, |s| {
                    s.dependencies.insert(k, dep);
                });
            }
        }

        if let Some(items) = m.get("items") {
            match items {
                J::Arr(a) => {
                    for el in a {
                        if !matches!(el, J::Bool(_) | J::Obj(_)) {
                            return Err(invalid_type("Valid Schema/Array Of Schemas", "items"));
                        }
                        let child = self.parse_child(el, cur, depth)?;
                        self.set(cur, |s| {
                            s.items.push(child);
                            s.items_single = false;
                        });
                    }
                }
                J::Bool(_) | J::Obj(_) => {
                    let child = self.parse_child(items, cur, depth)?;
                    self.set(cur, |s| {
                        s.items.push(child);
                        s.items_single = true;
                    });
                }
                _ => return Err(invalid_type("Valid Schema/Array Of Schemas", "items")),
            }
        }

        if let Some(ai) = m.get("additionalItems") {
            let value = match ai {
                J::Bool(b) => Additional::Bool(*b),
                J::Obj(_) => Additional::Schema(self.parse_child(ai, cur, depth)?),
                _ => return Err(invalid_type("boolean/Valid Schema", "additionalItems")),
            };
            self.set(cur, |s| s.additional_items = value);
        }

        if let Some(v) = m.get("multipleOf") {
            let d = must_be_number(v).ok_or_else(|| invalid_type("Number", "multipleOf"))?;
            if !d.mant.is_positive() {
                return Err("multipleOf must be strictly greater than 0".to_owned());
            }
            self.set(cur, |s| s.multiple_of = Some(d));
        }

        if let Some(v) = m.get("minimum") {
            let d = must_be_number(v).ok_or_else(|| "minimum must be of a Number".to_owned())?;
            self.set(cur, |s| s.minimum = Some(d));
        }
        if let Some(v) = m.get("exclusiveMinimum") {
            self.parse_exclusive(cur, draft, v, true)?;
        }
        if let Some(v) = m.get("maximum") {
            let d = must_be_number(v).ok_or_else(|| "maximum must be of a Number".to_owned())?;
            self.set(cur, |s| s.maximum = Some(d));
        }
        if let Some(v) = m.get("exclusiveMaximum") {
            self.parse_exclusive(cur, draft, v, false)?;
        }

        let min_length = non_negative(m, "minLength")?;
        let max_length = non_negative(m, "maxLength")?;
        if let (Some(a), Some(b)) = (min_length, max_length) {
            if a > b {
                return Err("minLength cannot be greater than maxLength".to_owned());
            }
        }
        self.set(cur, |s| {
            s.min_length = min_length;
            s.max_length = max_length;
        });

        if let Some(p) = get_str(m, "pattern")? {
            let re = compile_regex(p).ok_or_else(|| "pattern must be a valid regex".to_owned())?;
            let p = p.to_owned();
            self.set(cur, |s| s.pattern = Some((re, p)));
        }
        if let Some(f) = get_str(m, "format")? {
            let f = f.to_owned();
            self.set(cur, |s| s.format = f);
        }

        let min_props = non_negative(m, "minProperties")?;
        let max_props = non_negative(m, "maxProperties")?;
        if let (Some(a), Some(b)) = (min_props, max_props) {
            if a > b {
                return Err("minProperties cannot be greater than maxProperties".to_owned());
            }
        }
        self.set(cur, |s| {
            s.min_properties = min_props;
            s.max_properties = max_props;
        });

        if let Some(req) = get_slice(m, "required")? {
            let mut required: Vec<String> = Vec::new();
            for r in req {
                let J::Str(r) = r else {
                    return Err(invalid_type("string", "required"));
                };
                if required.contains(r) {
                    return Err("required items must be unique".to_owned());
                }
                required.push(r.clone());
            }
            self.set(cur, |s| s.required = required);
        }

        let min_items = non_negative(m, "minItems")?;
        let max_items = non_negative(m, "maxItems")?;
        self.set(cur, |s| {
            s.min_items = min_items;
            s.max_items = max_items;
        });

        if let Some(u) = m.get("uniqueItems") {
            let J::Bool(u) = u else {
                return Err("uniqueItems must be of a boolean".to_owned());
            };
            let u = *u;
            self.set(cur, |s| s.unique_items = u);
        }

        if draft >= Draft::D6 {
            if let Some(c) = m.get("contains") {
                let child = self.parse_child(c, cur, depth)?;
                self.set(cur, |s| s.contains = Some(child));
            }
            if let Some(c) = m.get("const") {
                let text = canonical_json(c);
                self.set(cur, |s| s.const_ = Some(text));
            }
        }

        if let Some(values) = get_slice(m, "enum")? {
            let mut texts: Vec<String> = Vec::new();
            for v in values {
                let t = canonical_json(v);
                if texts.contains(&t) {
                    return Err("enum items must be unique".to_owned());
                }
                texts.push(t);
            }
            self.set(cur, |s| s.enum_ = Some(texts));
        }

        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(list) = get_slice(m, key)? {
                for v in list {
                    let child = self.parse_child(v, cur, depth)?;
                    self.set(cur, |s| match key {
                        "oneOf" => s.one_of.push(child),
                        "anyOf" => s.any_of.push(child),
                        _ => s.all_of.push(child),
                    });
                }
            }
        }

        if let Some(n) = m.get("not") {
            if !matches!(n, J::Bool(_) | J::Obj(_)) {
                return Err("not must be of an object".to_owned());
            }
            let child = self.parse_child(n, cur, depth)?;
            self.set(cur, |s| s.not = Some(child));
        }

        if draft >= Draft::D7 {
            for key in ["if", "then", "else"] {
                if let Some(v) = m.get(key) {
                    if !matches!(v, J::Bool(_) | J::Obj(_)) {
                        return Err(format!("{key} must be of an object"));
                    }
                    let child = self.parse_child(v, cur, depth)?;
                    self.set(cur, |s| match key {
                        "if" => s.if_ = Some(child),
                        "then" => s.then = Some(child),
                        _ => s.else_ = Some(child),
                    });
                }
            }
        }
        Ok(())
    }

    fn parse_exclusive(
        &mut self,
        cur: usize,
        draft: Draft,
        v: &J,
        is_min: bool,
    ) -> Result<(), String> {
        let (key, base) = if is_min {
            ("exclusiveMinimum", "minimum")
        } else {
            ("exclusiveMaximum", "maximum")
        };
        let bound = |s: &Sub| {
            if is_min {
                s.minimum.clone()
            } else {
                s.maximum.clone()
            }
        };
        let apply_bool = |c: &mut Compiler, b: bool| -> Result<(), String> {
            let current = c.subs.get(cur).and_then(bound);
            let Some(current) = current else {
                return Err(format!("{key} cannot be used without {base}"));
            };
            if b {
                c.set(cur, |s| {
                    if is_min {
                        s.exclusive_minimum = Some(current);
                        s.minimum = None;
                    } else {
                        s.exclusive_maximum = Some(current);
                        s.maximum = None;
                    }
                });
            }
            Ok(())
        };
        let apply_num = |c: &mut Compiler, d: Option<Dec>| {
            c.set(cur, |s| {
                if is_min {
                    s.exclusive_minimum = d;
                } else {
                    s.exclusive_maximum = d;
                }
            });
        };
        match draft {
            Draft::D4 => match v {
                J::Bool(b) => apply_bool(self, *b),
                _ => Err(invalid_type("boolean", key)),
            },
            Draft::Hybrid => match v {
                J::Bool(b) => apply_bool(self, *b),
                J::Num(_) => {
                    apply_num(self, must_be_number(v));
                    Ok(())
                }
                _ => Err(invalid_type("boolean/number", key)),
            },
            _ => match v {
                J::Num(_) => {
                    apply_num(self, must_be_number(v));
                    Ok(())
                }
                _ => Err(invalid_type("number", key)),
            },
        }
    }
}

fn non_negative(m: &BTreeMap<String, J>, key: &str) -> Result<Option<i64>, String> {
    let Some(v) = m.get(key) else { return Ok(None) };
    let n = must_be_integer(v).ok_or_else(|| format!("{key} must be of an integer"))?;
    if n < 0 {
        return Err(format!("{key} must be greater than or equal to 0"));
    }
    Ok(Some(n))
}

// ---------------------------------------------------------------------------------------------
// Validation

#[derive(Debug, Clone)]
struct ResultError {
    kind: &'static str,
    field: String,
    desc: String,
}

#[derive(Debug, Default)]
struct Outcome {
    errors: Vec<ResultError>,
    /// How closely the document matched; picks the branch whose errors `anyOf`/`oneOf` report.
    score: i64,
}

impl Outcome {
    fn add(&mut self, kind: &'static str, ctx: &[String], desc: String) {
        self.errors.push(ResultError {
            kind,
            field: field_of(ctx),
            desc,
        });
        self.score -= 2;
    }

    fn merge(&mut self, other: Outcome) {
        self.errors.extend(other.errors);
        self.score += other.score;
    }

    fn valid(&self) -> bool {
        self.errors.is_empty()
    }
}

fn field_of(ctx: &[String]) -> String {
    let full = ctx.join(".");
    match full.strip_prefix("(Root).") {
        Some(rest) => rest.to_owned(),
        None => full,
    }
}

fn with(ctx: &[String], seg: impl Into<String>) -> Vec<String> {
    let mut c = ctx.to_vec();
    c.push(seg.into());
    c
}

struct DepthExceeded;

impl Schema {
    fn validate(&self, doc: &J) -> Result<Outcome, String> {
        let mut out = Outcome::default();
        let ctx = vec!["(Root)".to_owned()];
        self.recurse(self.root, doc, &mut out, &ctx, 0)
            .map_err(|DepthExceeded| "validation exceeded maximum depth".to_owned())?;
        Ok(out)
    }

    fn sub(&self, id: usize) -> Option<&Sub> {
        self.subs.get(id)
    }

    fn sub_validate(
        &self,
        id: usize,
        node: &J,
        ctx: &[String],
        depth: usize,
    ) -> Result<Outcome, DepthExceeded> {
        let mut out = Outcome::default();
        self.recurse(id, node, &mut out, ctx, depth + 1)?;
        Ok(out)
    }

    fn recurse(
        &self,
        id: usize,
        node: &J,
        out: &mut Outcome,
        ctx: &[String],
        depth: usize,
    ) -> Result<(), DepthExceeded> {
        if depth > MAX_DEPTH * 4 {
            return Err(DepthExceeded);
        }
        let Some(s) = self.sub(id) else { return Ok(()) };
        if let Some(pass) = s.pass {
            if !pass {
                out.add("false", ctx, "False always fails validation".to_owned());
            }
            return Ok(());
        }
        if let Some(target) = s.ref_schema {
            return self.recurse(target, node, out, ctx, depth + 1);
        }
        let typed = !s.types.is_empty();
        let has = |t: &str| s.types.iter().any(|x| x == t);
        let type_error = |out: &mut Outcome, given: &str| {
            out.add(
                "invalid_type",
                ctx,
                format!("Invalid type. Expected: {}, given: {given}", s.types_text()),
            );
        };
        match node {
            J::Null => {
                if typed && !has("null") {
                    type_error(out, "null");
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                self.validate_common(s, node, out, ctx);
            }
            J::Num(t) => {
                let dec = Dec::parse(t);
                let is_int = dec.as_ref().is_some_and(Dec::is_int);
                if typed && !(has("number") || (is_int && has("integer"))) {
                    type_error(out, if is_int { "integer" } else { "number" });
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                if let Some(d) = &dec {
                    validate_number(s, d, out, ctx);
                }
                self.validate_common(s, node, out, ctx);
            }
            J::Arr(items) => {
                if typed && !has("array") {
                    type_error(out, "array");
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                self.validate_array(s, items, out, ctx, depth)?;
                self.validate_common(s, node, out, ctx);
            }
            J::Obj(m) => {
                if typed && !has("object") {
                    type_error(out, "object");
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                self.validate_object(s, m, out, ctx, depth)?;
                self.validate_common(s, node, out, ctx);
                for (name, child) in &s.properties {
                    if let Some(v) = m.get(name) {
                        self.recurse(*child, v, out, &with(ctx, name.clone()), depth + 1)?;
                    }
                }
            }
            J::Bool(_) => {
                if typed && !has("boolean") {
                    type_error(out, "boolean");
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                self.validate_common(s, node, out, ctx);
            }
            J::Str(text) => {
                if typed && !has("string") {
                    type_error(out, "string");
                    return Ok(());
                }
                self.validate_schema(s, node, out, ctx, depth)?;
                self.validate_common(s, node, out, ctx);
                validate_string(s, text, out, ctx);
            }
        }
        out.score += 1;
        Ok(())
    }

    fn validate_schema(
        &self,
        s: &Sub,
        node: &J,
        out: &mut Outcome,
        ctx: &[String],
        depth: usize,
    ) -> Result<(), DepthExceeded> {
        if !s.any_of.is_empty() {
            let mut matched = false;
            let mut best: Option<Outcome> = None;
            for &branch in &s.any_of {
                let r = self.sub_validate(branch, node, ctx, depth)?;
                if r.valid() {
                    matched = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| r.score > b.score) {
                    best = Some(r);
                }
            }
            if !matched {
                out.add(
                    "number_any_of",
                    ctx,
                    "Must validate at least one schema (anyOf)".to_owned(),
                );
                if let Some(b) = best {
                    out.merge(b);
                }
            }
        }
        if !s.one_of.is_empty() {
            let mut passed = 0usize;
            let mut best: Option<Outcome> = None;
            for &branch in &s.one_of {
                let r = self.sub_validate(branch, node, ctx, depth)?;
                if r.valid() {
                    passed += 1;
                } else if passed == 0 && best.as_ref().is_none_or(|b| r.score > b.score) {
                    best = Some(r);
                }
            }
            if passed != 1 {
                out.add(
                    "number_one_of",
                    ctx,
                    "Must validate one and only one schema (oneOf)".to_owned(),
                );
                if passed == 0 {
                    if let Some(b) = best {
                        out.merge(b);
                    }
                }
            }
        }
        if !s.all_of.is_empty() {
            let mut passed = 0usize;
            for &branch in &s.all_of {
                let r = self.sub_validate(branch, node, ctx, depth)?;
                if r.valid() {
                    passed += 1;
                }
                out.merge(r);
            }
            if passed != s.all_of.len() {
                out.add(
                    "number_all_of",
                    ctx,
                    "Must validate all the schemas (allOf)".to_owned(),
                );
            }
        }
        if let Some(n) = s.not {
            if self.sub_validate(n, node, ctx, depth)?.valid() {
                out.add(
                    "number_not",
                    ctx,
                    "Must not validate the schema (not)".to_owned(),
                );
            }
        }
        if let J::Obj(m) = node {
            for key in m.keys() {
                match s.dependencies.get(key) {
                    Some(Dependency::Keys(keys)) => {
                        for k in keys {
                            if !m.contains_key(k) {
                                out.add(
                                    "missing_dependency",
                                    ctx,
                                    format!("Has a dependency on {k}"),
                                );
                            }
                        }
                    }
                    Some(Dependency::Schema(d)) => self.recurse(*d, node, out, ctx, depth + 1)?,
                    None => {}
                }
            }
        }
        if let Some(cond) = s.if_ {
            let if_valid = self.sub_validate(cond, node, ctx, depth)?.valid();
            if let (Some(then), true) = (s.then, if_valid) {
                let r = self.sub_validate(then, node, ctx, depth)?;
                if !r.valid() {
                    out.add(
                        "condition_then",
                        ctx,
                        "Must validate \"then\" as \"if\" was valid".to_owned(),
                    );
                    out.merge(r);
                }
            }
            if let (Some(els), false) = (s.else_, if_valid) {
                let r = self.sub_validate(els, node, ctx, depth)?;
                if !r.valid() {
                    out.add(
                        "condition_else",
                        ctx,
                        "Must validate \"else\" as \"if\" was not valid".to_owned(),
                    );
                    out.merge(r);
                }
            }
        }
        out.score += 1;
        Ok(())
    }

    fn validate_common(&self, s: &Sub, node: &J, out: &mut Outcome, ctx: &[String]) {
        let field = field_of(ctx);
        if let Some(c) = &s.const_ {
            if canonical_json(node) != *c {
                out.add("const", ctx, format!("{field} does not match: {c}"));
            }
        }
        if let Some(values) = &s.enum_ {
            let text = canonical_json(node);
            if !values.contains(&text) {
                out.add(
                    "enum",
                    ctx,
                    format!(
                        "{field} must be one of the following: {}",
                        values.join(", ")
                    ),
                );
            }
        }
        if !s.format.is_empty() {
            if let J::Str(text) = node {
                if !format_ok(&s.format, text) {
                    out.add(
                        "format",
                        ctx,
                        format!("Does not match format '{}'", s.format),
                    );
                }
            }
        }
        out.score += 1;
    }

    fn validate_array(
        &self,
        s: &Sub,
        items: &[J],
        out: &mut Outcome,
        ctx: &[String],
        depth: usize,
    ) -> Result<(), DepthExceeded> {
        if s.items_single {
            if let Some(&schema) = s.items.first() {
                for (i, v) in items.iter().enumerate() {
                    let r = self.sub_validate(schema, v, &with(ctx, i.to_string()), depth)?;
                    out.merge(r);
                }
            }
        } else if !s.items.is_empty() {
            for (i, (v, &schema)) in items.iter().zip(&s.items).enumerate() {
                let r = self.sub_validate(schema, v, &with(ctx, i.to_string()), depth)?;
                out.merge(r);
            }
            if s.items.len() < items.len() {
                match s.additional_items {
                    Additional::Bool(false) => {
                        out.add(
                            "array_no_additional_items",
                            ctx,
                            "No additional items allowed on array".to_owned(),
                        );
                    }
                    Additional::Schema(extra) => {
                        for (i, v) in items.iter().enumerate().skip(s.items.len()) {
                            let r =
                                self.sub_validate(extra, v, &with(ctx, i.to_string()), depth)?;
                            out.merge(r);
                        }
                    }
                    _ => {}
                }
            }
        }
        let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
        if let Some(min) = s.min_items {
            if count < min {
                out.add(
                    "array_min_items",
                    ctx,
                    format!("Array must have at least {min} items"),
                );
            }
        }
        if let Some(max) = s.max_items {
            if count > max {
                out.add(
                    "array_max_items",
                    ctx,
                    format!("Array must have at most {max} items"),
                );
            }
        }
        if s.unique_items {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for (j, v) in items.iter().enumerate() {
                let text = canonical_json(v);
                if let Some(i) = seen.get(&text) {
                    out.add(
                        "unique",
                        ctx,
                        format!("array items[{i},{j}] must be unique"),
                    );
                }
                seen.insert(text, j);
            }
        }
        if let Some(c) = s.contains {
            let mut matched = false;
            let mut best: Option<Outcome> = None;
            for (i, v) in items.iter().enumerate() {
                let r = self.sub_validate(c, v, &with(ctx, i.to_string()), depth)?;
                if r.valid() {
                    matched = true;
                    break;
                }
                if best.as_ref().is_none_or(|b| r.score > b.score) {
                    best = Some(r);
                }
            }
            if !matched {
                out.add(
                    "contains",
                    ctx,
                    "At least one of the items must match".to_owned(),
                );
                if let Some(b) = best {
                    out.merge(b);
                }
            }
        }
        out.score += 1;
        Ok(())
    }

    fn validate_object(
        &self,
        s: &Sub,
        m: &BTreeMap<String, J>,
        out: &mut Outcome,
        ctx: &[String],
        depth: usize,
    ) -> Result<(), DepthExceeded> {
        let count = i64::try_from(m.len()).unwrap_or(i64::MAX);
        if let Some(min) = s.min_properties {
            if count < min {
                out.add(
                    "array_min_properties",
                    ctx,
                    format!("Must have at least {min} properties"),
                );
            }
        }
        if let Some(max) = s.max_properties {
            if count > max {
                out.add(
                    "array_max_properties",
                    ctx,
                    format!("Must have at most {max} properties"),
                );
            }
        }
        for req in &s.required {
            if m.contains_key(req) {
                out.score += 1;
            } else {
                out.add("required", ctx, format!("{req} is required"));
            }
        }
        for (key, value) in m {
            let declared = s.properties.iter().any(|(name, _)| name == key);
            let mut pattern_matched = false;
            for (re, schema) in &s.pattern_properties {
                if re.is_match(key) {
                    pattern_matched = true;
                    let r = self.sub_validate(*schema, value, &with(ctx, key.clone()), depth)?;
                    out.merge(r);
                }
            }
            if pattern_matched {
                out.score += 1;
            }
            if !declared && !pattern_matched {
                match s.additional_properties {
                    Additional::Bool(false) => {
                        out.add(
                            "additional_property_not_allowed",
                            ctx,
                            format!("Additional property {key} is not allowed"),
                        );
                    }
                    Additional::Schema(extra) => {
                        let r = self.sub_validate(extra, value, &with(ctx, key.clone()), depth)?;
                        out.merge(r);
                    }
                    _ => {}
                }
            }
        }
        if let Some(pn) = s.property_names {
            for key in m.keys() {
                let r = self.sub_validate(pn, &J::Str(key.clone()), ctx, depth)?;
                if !r.valid() {
                    out.add(
                        "invalid_property_name",
                        ctx,
                        format!("Property name of \"{key}\" does not match"),
                    );
                    out.merge(r);
                }
            }
        }
        out.score += 1;
        Ok(())
    }
}

fn validate_number(s: &Sub, d: &Dec, out: &mut Outcome, ctx: &[String]) {
    use std::cmp::Ordering;
    if let Some(m) = &s.multiple_of {
        if !d.is_multiple_of(m) {
            out.add(
                "multiple_of",
                ctx,
                format!("Must be a multiple of {}", go_big_float_text(m)),
            );
        }
    }
    if let Some(max) = &s.maximum {
        if d.cmp(max) == Ordering::Greater {
            out.add(
                "number_lte",
                ctx,
                format!("Must be less than or equal to {}", go_big_float_text(max)),
            );
        }
    }
    if let Some(max) = &s.exclusive_maximum {
        if d.cmp(max) != Ordering::Less {
            out.add(
                "number_lt",
                ctx,
                format!("Must be less than {}", go_big_float_text(max)),
            );
        }
    }
    if let Some(min) = &s.minimum {
        if d.cmp(min) == Ordering::Less {
            out.add(
                "number_gte",
                ctx,
                format!(
                    "Must be greater than or equal to {}",
                    go_big_float_text(min)
                ),
            );
        }
    }
    if let Some(min) = &s.exclusive_minimum {
        if d.cmp(min) != Ordering::Greater {
            out.add(
                "number_gt",
                ctx,
                format!("Must be greater than {}", go_big_float_text(min)),
            );
        }
    }
    out.score += 1;
}

fn validate_string(s: &Sub, text: &str, out: &mut Outcome, ctx: &[String]) {
    let len = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
    if let Some(min) = s.min_length {
        if len < min {
            out.add(
                "string_gte",
                ctx,
                format!("String length must be greater than or equal to {min}"),
            );
        }
    }
    if let Some(max) = s.max_length {
        if len > max {
            out.add(
                "string_lte",
                ctx,
                format!("String length must be less than or equal to {max}"),
            );
        }
    }
    if let Some((re, src)) = &s.pattern {
        if !re.is_match(text) {
            out.add("pattern", ctx, format!("Does not match pattern '{src}'"));
        }
    }
    out.score += 1;
}

// ---------------------------------------------------------------------------------------------
// Formats (gojsonschema's checkers; unknown formats always pass)

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date" => parse_date(s).is_some_and(str::is_empty),
        "time" => parse_time(s, true).is_some_and(str::is_empty),
        "date-time" => {
            parse_time(s, true).is_some_and(str::is_empty)
                || parse_date(s).is_some_and(str::is_empty)
                || parse_date(s)
                    .and_then(|rest| rest.strip_prefix('T'))
                    .and_then(|rest| parse_time(rest, false))
                    .is_some_and(str::is_empty)
        }
        "hostname" => is_hostname(s),
        "email" | "idn-email" => is_email(s),
        "ipv4" => s.contains('.') && is_ip(s),
        "ipv6" => s.contains(':') && is_ip(s),
        "uri" | "iri" => !s.contains('\\') && go_url_parse(s).is_some_and(|u| u.has_scheme),
        "uri-reference" | "iri-reference" => !s.contains('\\') && go_url_parse(s).is_some(),
        "uri-template" => {
            !s.contains('\\')
                && go_url_parse(s).is_some_and(|u| {
                    // ^([^{]*({[^}]*})?)*$ : braces never nest and every one closes.
                    let mut open = false;
                    for c in u.path.chars() {
                        match c {
                            '{' if open => return false,
                            '{' => open = true,
                            '}' => open = false,
                            _ => {}
                        }
                    }
                    !open
                })
        }
        "uuid" => is_uuid(s),
        "regex" => s.is_empty() || compile_regex(s).is_some(),
        "json-pointer" => is_json_pointer(s),
        "relative-json-pointer" => {
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            let (num, rest) = s.split_at(digits);
            !num.is_empty()
                && (num == "0" || !num.starts_with('0'))
                && (rest == "#" || is_json_pointer(rest))
        }
        _ => true,
    }
}

fn take_digits(s: &str, min: usize, max: usize) -> Option<(u32, &str)> {
    let n = s.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    let (d, rest) = s.split_at(n);
    Some((d.parse().ok()?, rest))
}

/// Go's `time.Parse("2006-01-02", ...)`; returns what follows the date.
fn parse_date(s: &str) -> Option<&str> {
    let (year, rest) = take_digits(s, 4, 4)?;
    let rest = rest.strip_prefix('-')?;
    let (month, rest) = take_digits(rest, 2, 2)?;
    let rest = rest.strip_prefix('-')?;
    let (day, rest) = take_digits(rest, 2, 2)?;
    if !(1..=12).contains(&month) || day < 1 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (day <= days).then_some(rest)
}

/// Go's `time.Parse` with "15:04:05" (optionally followed by "Z07:00"); a fractional second is
/// accepted after the seconds as Go does. `loose_hour` allows a one-digit hour ("15" layout);
/// the RFC 3339 layouts want two.
fn parse_time(s: &str, loose_hour: bool) -> Option<&str> {
    let (hour, rest) = take_digits(s, if loose_hour { 1 } else { 2 }, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (min, rest) = take_digits(rest, 2, 2)?;
    let rest = rest.strip_prefix(':')?;
    let (sec, mut rest) = take_digits(rest, 2, 2)?;
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    if let Some(frac) = rest.strip_prefix(['.', ',']) {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = frac.get(n..)?;
    }
    if rest.is_empty() {
        return Some(rest);
    }
    if let Some(r) = rest.strip_prefix('Z') {
        return Some(r);
    }
    let tz = rest.strip_prefix(['+', '-'])?;
    let (h, tz) = take_digits(tz, 2, 2)?;
    let tz = tz.strip_prefix(':')?;
    let (m, tz) = take_digits(tz, 2, 2)?;
    (h < 24 && m < 60).then_some(tz)
}

fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() >= 256 {
        return false;
    }
    s.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
    })
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok() || s.parse::<std::net::Ipv6Addr>().is_ok()
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_json_pointer(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    if !s.starts_with('/') {
        return false;
    }
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
}

/// An approximation of Go's `net/mail.ParseAddress`: `local@domain`, optionally as
/// `Display Name <local@domain>`.
fn is_email(s: &str) -> bool {
    let s = s.trim();
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => inner.get(i + 1..).unwrap_or_default(),
        _ => s,
    };
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom =
        |p: &str| !p.is_empty() && p.split('.').all(|a| !a.is_empty() && a.chars().all(atext));
    let local_ok =
        dot_atom(local) || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"'));
    let domain_ok = dot_atom(domain) || (domain.starts_with('[') && domain.ends_with(']'));
    local_ok && domain_ok
}

struct GoUrl {
    has_scheme: bool,
    path: String,
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, c)| {
        *c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// The checks Go's `url.Parse` makes, enough to tell which strings it rejects.
fn go_url_parse(s: &str) -> Option<GoUrl> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let (rest, frag) = s.split_once('#').unwrap_or((s, ""));
    if !valid_escapes(frag) {
        return None;
    }
    if rest.is_empty() {
        return Some(GoUrl {
            has_scheme: false,
            path: String::new(),
        });
    }
    let mut scheme = "";
    let mut rest = rest;
    for (i, c) in rest.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if c.is_ascii_digit() || "+-.".contains(c) {
            if i == 0 {
                break;
            }
            continue;
        }
        if c == ':' {
            if i == 0 {
                return None;
            }
            scheme = rest.get(..i).unwrap_or_default();
            rest = rest.get(i + 1..).unwrap_or_default();
        }
        break;
    }
    let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            return Some(GoUrl {
                has_scheme: true,
                path: String::new(),
            });
        }
        let first = rest.split('/').next().unwrap_or_default();
        if first.contains(':') {
            return None;
        }
    }
    let mut path = rest;
    if let Some(auth_rest) = rest
        .strip_prefix("//")
        .filter(|_| !scheme.is_empty() || !rest.starts_with("///"))
    {
        let end = auth_rest.find('/').unwrap_or(auth_rest.len());
        let authority = auth_rest.get(..end).unwrap_or_default();
        path = auth_rest.get(end..).unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if !valid_host(host) {
            return None;
        }
    }
    if !valid_escapes(path) {
        return None;
    }
    Some(GoUrl {
        has_scheme: !scheme.is_empty(),
        path: percent_decode(path),
    })
}

fn valid_host(host: &str) -> bool {
    let valid_port = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    if let Some(inner) = host.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return false;
        };
        return valid_port(inner.get(close + 1..).unwrap_or_default());
    }
    let name = match host.rfind(':') {
        Some(i) => {
            if !valid_port(host.get(i..).unwrap_or_default()) {
                return false;
            }
            host.get(..i).unwrap_or_default()
        }
        None => host,
    };
    valid_escapes(name)
        && name.bytes().all(|b| {
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"%".contains(&b)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context { now_ns: 0 }
    }

    fn rego(s: &str) -> Value {
        Value::parse_rego(s).unwrap()
    }

    fn matches(doc: &str, schema: &str) -> Value {
        match_schema(&[rego(doc), rego(schema)], &ctx())
            .unwrap()
            .unwrap()
    }

    // The OPA v1.22.3 conformance cases (v1/test/cases/testdata/v1/jsonschema).
    #[test]
    fn conformance_match_schema() {
        let schema = r#"{"properties": {"id": {"type": "integer"}}, "required": ["id"]}"#;
        let ok = rego("[true, []]");
        assert_eq!(matches(r#"{"id": 5}"#, schema), ok);
        assert_eq!(matches(r#""{\"id\": 5}""#, schema), ok);
        let schema_text = Value::String(
            r#"{"properties": {"id": {"type": "integer"}}, "required": ["id"]}"#.into(),
        );
        assert_eq!(matches(r#"{"id": 5}"#, &schema_text.to_rego()), ok);
        assert_eq!(
            matches(r#"{"id": "foo"}"#, schema),
            rego(
                r#"[false, [{"desc": "Invalid type. Expected: integer, given: string",
                "error": "id: Invalid type. Expected: integer, given: string",
                "field": "id", "type": "invalid_type"}]]"#
            )
        );
        let bad = r#"{"properties": {"id": {"type": "unknown"}}, "required": ["id"]}"#;
        assert_eq!(
            match_schema(&[rego(r#"{"id": "foo"}"#), rego(bad)], &ctx()),
            Err(super::super::BuiltinError(
                "has a primitive type that is NOT VALID -- given: /unknown/ Expected valid values are:[array boolean integer number null object string]".into()
            ))
        );
    }

    #[test]
    fn conformance_verify_schema() {
        let ok = rego("[true, null]");
        assert_eq!(
            verify_schema(&[Value::str(r#"{"type": "boolean"}"#)], &ctx())
                .unwrap()
                .unwrap(),
            ok
        );
        assert_eq!(
            verify_schema(&[rego(r#"{"type": "boolean"}"#)], &ctx())
                .unwrap()
                .unwrap(),
            ok
        );
        let want = rego(
            r#"[false, "jsonschema: has a primitive type that is NOT VALID -- given: /unknown_type/ Expected valid values are:[array boolean integer number null object string]"]"#,
        );
        assert_eq!(
            verify_schema(&[Value::str(r#"{"type": "unknown_type"}"#)], &ctx())
                .unwrap()
                .unwrap(),
            want
        );
        assert_eq!(
            verify_schema(&[rego(r#"{"type": "unknown_type"}"#)], &ctx())
                .unwrap()
                .unwrap(),
            want
        );
    }

    // Generated from `opa eval` (v1.22.3) runs: [document, schema] -> (valid, ["type|error"]).
    const MATCH_CASES: &[(&str, bool, &[&str])] = &[
        (
            r####"["5", {"type": "string"}]"####,
            false,
            &[r####"invalid_type|(Root): Invalid type. Expected: string, given: integer"####],
        ),
        (
            r####"["5.5", {"type": ["string", "integer"]}]"####,
            false,
            &[
                r####"invalid_type|(Root): Invalid type. Expected: [string,integer], given: number"####,
            ],
        ),
        (
            r####"[{"a": 7.2}, {"properties": {"a": {"multipleOf": 0.5, "maximum": 3}}}]"####,
            false,
            &[
                r####"multiple_of|a: Must be a multiple of 0.5"####,
                r####"number_lte|a: Must be less than or equal to 3"####,
            ],
        ),
        (
            r####"["\"abc\"", {"anyOf": [{"type": "integer"}, {"minLength": 5}]}]"####,
            false,
            &[
                r####"number_any_of|(Root): Must validate at least one schema (anyOf)"####,
                r####"string_gte|(Root): String length must be greater than or equal to 5"####,
            ],
        ),
        (
            r####"["\"2020-13-01\"", {"format": "date"}]"####,
            false,
            &[r####"format|(Root): Does not match format 'date'"####],
        ),
        (
            r####"["\"2020-12-01T10:00:00.5Z\"", {"format": "date-time"}]"####,
            true,
            &[],
        ),
        (
            r####"["3", {"const": 4}]"####,
            false,
            &[r####"const|(Root): (Root) does not match: 4"####],
        ),
        (r####"["1e400", {"type": "integer"}]"####, true, &[]),
        (
            r####"["[1, 1.0, 2]", {"uniqueItems": true}]"####,
            false,
            &[r####"unique|(Root): array items[0,1] must be unique"####],
        ),
        (
            r####"["{\"a\": 1}", {"dependencies": {"a": ["b", "c"]}, "propertyNames": {"maxLength": 0}}]"####,
            false,
            &[
                r####"missing_dependency|(Root): Has a dependency on b"####,
                r####"missing_dependency|(Root): Has a dependency on c"####,
                r####"invalid_property_name|(Root): Property name of "a" does not match"####,
                r####"string_lte|(Root): String length must be less than or equal to 0"####,
            ],
        ),
        (
            r####"["{\"a\": 1}", {"oneOf": [{"required": ["a"]}, {"required": ["a"]}], "not": {"type":"object"}}]"####,
            false,
            &[
                r####"number_one_of|(Root): Must validate one and only one schema (oneOf)"####,
                r####"number_not|(Root): Must not validate the schema (not)"####,
            ],
        ),
        (
            r####"["1", {"if": {"minimum": 0}, "then": {"maximum": 0}, "else": false}]"####,
            false,
            &[
                r####"condition_then|(Root): Must validate "then" as "if" was valid"####,
                r####"number_lte|(Root): Must be less than or equal to 0"####,
            ],
        ),
        (
            r####"["-1", {"if": {"minimum": 0}, "then": {"maximum": 0}, "else": false}]"####,
            false,
            &[
                r####"condition_else|(Root): Must validate "else" as "if" was not valid"####,
                r####"false|(Root): False always fails validation"####,
            ],
        ),
        (
            r####"["12345678901234", {"exclusiveMaximum": 0.001, "minimum": 123456789012345, "multipleOf": 0.3333333333333333}]"####,
            false,
            &[
                r####"multiple_of|(Root): Must be a multiple of 0.3333333333333333"####,
                r####"number_lt|(Root): Must be less than 0.001"####,
                r####"number_gte|(Root): Must be greater than or equal to 1.23456789012345e+14"####,
            ],
        ),
        (
            r####"["\"x\"", {"pattern": "^a+$", "format": "email", "maxLength": 0}]"####,
            false,
            &[
                r####"format|(Root): Does not match format 'email'"####,
                r####"string_lte|(Root): String length must be less than or equal to 0"####,
                r####"pattern|(Root): Does not match pattern '^a+$'"####,
            ],
        ),
        (
            r####"["[1,2,3]", {"items": [{"type": "integer"}], "additionalItems": false, "contains": {"type": "string"}}]"####,
            false,
            &[
                r####"array_no_additional_items|(Root): No additional items allowed on array"####,
                r####"contains|(Root): At least one of the items must match"####,
                r####"invalid_type|0: Invalid type. Expected: string, given: integer"####,
            ],
        ),
    ];
    // Also from `opa eval`, except the remote reference, which OPA fetches and the host may not.
    const VERIFY_CASES: &[(&str, Option<&str>)] = &[
        (
            r####"{"type": 5}"####,
            Some(
                r####"jsonschema: Invalid type. Expected: type, given: string/Array Of Strings"####,
            ),
        ),
        (
            r####"{"minLength": -1}"####,
            Some(r####"jsonschema: minLength must be greater than or equal to 0"####),
        ),
        (
            r####"{"minLength": 1.5}"####,
            Some(r####"jsonschema: minLength must be of an integer"####),
        ),
        (
            r####"{"required": ["a", "a"]}"####,
            Some(r####"jsonschema: required items must be unique"####),
        ),
        (
            r####"{"enum": [1, 1.0]}"####,
            Some(r####"jsonschema: enum items must be unique"####),
        ),
        (
            r####"{"$ref": "#/definitions/x"}"####,
            Some(r####"jsonschema: Object has no key 'definitions'"####),
        ),
        (
            r####"{"$ref": "http://example.com/x.json"}"####,
            Some(
                r####"jsonschema: remote reference loading disabled: http://example.com/x.json"####,
            ),
        ),
        (
            r####"{"$ref": "other.json"}"####,
            Some(r####"jsonschema: Reference /other.json must be canonical"####),
        ),
        (
            r####"{"exclusiveMinimum": true}"####,
            Some(r####"jsonschema: exclusiveMinimum cannot be used without minimum"####),
        ),
        (
            r####"{"properties": 5}"####,
            Some(r####"jsonschema: Properties must be of type object"####),
        ),
        (
            r####"{"items": 5}"####,
            Some(
                r####"jsonschema: Invalid type. Expected: Valid Schema/Array Of Schemas, given: items"####,
            ),
        ),
        (
            r####"{"pattern": "("}"####,
            Some(r####"jsonschema: pattern must be a valid regex"####),
        ),
        (
            r####"{"patternProperties": {"(": {}}}"####,
            Some(r####"jsonschema: Invalid regex pattern '('"####),
        ),
        (
            r####"{"dependencies": {"a": [1]}}"####,
            Some(r####"jsonschema: Dependency must be of type Schema Or Array Of Strings"####),
        ),
        (
            r####"{"$schema": "http://json-schema.org/draft-04/schema#", "exclusiveMinimum": 5}"####,
            Some(r####"jsonschema: Invalid type. Expected: boolean, given: exclusiveMinimum"####),
        ),
        (
            r####"{"type": ["string", "string"]}"####,
            Some(r####"jsonschema: string type is duplicated"####),
        ),
        (
            r####"{"not": 5}"####,
            Some(r####"jsonschema: not must be of an object"####),
        ),
        (
            r####"{"multipleOf": 0}"####,
            Some(r####"jsonschema: multipleOf must be strictly greater than 0"####),
        ),
        (r####"{"minItems": 2, "maxItems": 1}"####, None),
        (
            r####"{"minLength": 3, "maxLength": 1}"####,
            Some(r####"jsonschema: minLength cannot be greater than maxLength"####),
        ),
        (
            r####"[]"####,
            Some(r####"jsonschema: schema is invalid"####),
        ),
        (
            r####""5""####,
            Some(r####"jsonschema: schema is invalid"####),
        ),
        (
            r####"{"definitions": 5}"####,
            Some(
                r####"jsonschema: Invalid type. Expected: Array Of Schemas, given: definitions"####,
            ),
        ),
        (
            r####"{"$ref": 5}"####,
            Some(r####"jsonschema: Invalid type. Expected: string, given: $ref"####),
        ),
        (
            r####"{"additionalProperties": 5}"####,
            Some(
                r####"jsonschema: Invalid type. Expected: boolean/Valid Schema, given: additionalProperties"####,
            ),
        ),
        (
            r####"true"####,
            Some(r####"jsonschema: wrong type, expected string or object"####),
        ),
        (
            r####"{"$schema": 5}"####,
            Some(r####"jsonschema: $schema must be of type string"####),
        ),
        (
            r####"{"if": 5}"####,
            Some(r####"jsonschema: if must be of an object"####),
        ),
        (
            r####"{"const": 1, "enum": 5}"####,
            Some(r####"jsonschema: enum must be of an array"####),
        ),
        (
            r####"{"$id": "http://a/b", "definitions": {"x": {"$id": "http://a/b"}}}"####,
            Some(r####"jsonschema: Reference already exists: "http://a/b""####),
        ),
    ];

    #[test]
    fn matches_opa_eval() {
        for (case, valid, want) in MATCH_CASES {
            let Value::Array(pair) = rego(case) else {
                panic!()
            };
            let got = match_schema(&pair, &ctx()).unwrap().unwrap();
            let Value::Array(r) = &got else { panic!() };
            let Value::Array(errs) = r.get(1).unwrap() else {
                panic!()
            };
            let got_errs: Vec<String> = errs
                .iter()
                .map(|e| {
                    let Value::Object(o) = e else { panic!() };
                    let s = |k: &str| o.get(&Value::str(k)).unwrap().as_str().unwrap().to_owned();
                    format!("{}|{}", s("type"), s("error"))
                })
                .collect();
            assert_eq!(r.first(), Some(&Value::Bool(*valid)), "{case}");
            assert_eq!(got_errs, *want, "{case}");
        }
    }

    #[test]
    fn verify_matches_opa_eval() {
        for (case, want) in VERIFY_CASES {
            let got = verify_schema(&[rego(case)], &ctx()).unwrap().unwrap();
            let expected = match want {
                None => Value::Array(vec![Value::Bool(true), Value::Null]),
                Some(m) => Value::Array(vec![Value::Bool(false), Value::str(*m)]),
            };
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn recursive_refs_terminate() {
        let schema = r##"{"properties": {"child": {"$ref": "#"}, "n": {"type": "integer"}}}"##;
        let r = matches(r#"{"child": {"child": {"n": "x"}}}"#, schema);
        assert!(r
            .to_string()
            .contains("child.child.n: Invalid type. Expected: integer, given: string"));
        // A schema that is nothing but a reference to itself must not overflow the stack.
        assert!(match_schema(&[rego("1"), rego(r##"{"$ref": "#"}"##)], &ctx()).is_err());
    }

    #[test]
    fn bad_operands() {
        assert_eq!(
            verify_schema(&[rego("5")], &ctx()).unwrap().unwrap(),
            rego(r#"[false, "jsonschema: wrong type, expected string or object"]"#)
        );
        assert_eq!(
            verify_schema(&[Value::str("{")], &ctx()).unwrap().unwrap(),
            rego(r#"[false, "jsonschema: invalid JSON string"]"#)
        );
        assert!(match_schema(&[rego("5"), rego("{}")], &ctx()).is_err());
    }

    #[test]
    fn decimals() {
        let d = |s: &str| Dec::parse(s).unwrap();
        assert!(d("1.0").is_int());
        assert!(d("10").is_multiple_of(&d("0.1")));
        assert!(!d("0.3").is_multiple_of(&d("0.2")));
        assert!(
            d("1e400").is_multiple_of(&d("3")) == (d("1e400").mant.clone() % 3 == BigInt::zero())
        );
        assert_eq!(d("1e1000").cmp(&d("2")), std::cmp::Ordering::Greater);
        assert_eq!(go_big_float_text(&d("1e21")), "1e+21");
        assert_eq!(go_big_float_text(&d("0.0001")), "0.0001");
        assert_eq!(go_big_float_text(&d("0.00001")), "1e-05");
        assert_eq!(
            go_big_float_text(&d("123456789012345")),
            "1.23456789012345e+14"
        );
        assert_eq!(
            go_big_float_text(&d("0.3333333333333333")),
            "0.3333333333333333"
        );
        assert_eq!(go_big_float_text(&d("100000")), "100000");
        assert_eq!(go_big_float_text(&d("-2.50")), "-2.5");
    }
}
