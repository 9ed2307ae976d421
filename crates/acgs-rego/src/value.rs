//! Rego values as the host sees them: JSON plus sets and non-string object keys.
//!
//! Builtin arguments cross the Wasm boundary in Rego value syntax (`opa_value_dump`), so a set
//! stays a set. This module parses that syntax, prints it back (`opa_value_parse` reads it), and
//! converts to and from JSON.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use crate::{Error, Result};

/// A Rego number. Integers that fit `i64` stay exact; other integers keep their decimal text so
/// that large values (certificate serials, for example) survive a round trip.
#[derive(Debug, Clone)]
pub enum Number {
    Int(i64),
    Float(f64),
    /// A literal that neither `i64` nor `f64` holds exactly, kept as written: an integer past
    /// `i64`, or a float past `f64`'s range.
    Big(String),
}

impl Number {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                #[allow(clippy::cast_possible_truncation)] // range checked above
                Some(*f as i64)
            }
            _ => None,
        }
    }

    pub fn as_f64(&self) -> f64 {
        match self {
            #[allow(clippy::cast_precision_loss)] // f64 is the float view of a number by definition
            Number::Int(i) => *i as f64,
            Number::Float(f) => *f,
            Number::Big(s) => s.parse::<f64>().unwrap_or(f64::NAN),
        }
    }

    /// Parses a JSON/Rego number literal.
    pub fn parse(text: &str) -> Option<Number> {
        if text.is_empty() {
            return None;
        }
        let is_int = text
            .strip_prefix('-')
            .unwrap_or(text)
            .bytes()
            .all(|b| b.is_ascii_digit());
        if is_int {
            if let Ok(i) = text.parse::<i64>() {
                return Some(Number::Int(i));
            }
            if text.strip_prefix('-').unwrap_or(text).is_empty() {
                return None;
            }
            return Some(Number::Big(text.to_owned()));
        }
        let f = text.parse::<f64>().ok()?;
        if !f.is_finite() {
            // Past f64's range (OPA's numbers are arbitrary precision): keep the literal.
            return Some(Number::Big(text.to_owned()));
        }
        Some(Number::Float(f))
    }
}

impl From<i64> for Number {
    fn from(v: i64) -> Self {
        Number::Int(v)
    }
}

impl From<f64> for Number {
    fn from(v: f64) -> Self {
        Number::Float(v)
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Number {}
impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(b),
            (Number::Big(a), Number::Big(b)) => cmp_big(a, b),
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

fn cmp_big(a: &str, b: &str) -> Ordering {
    let integral = |t: &str| {
        t.strip_prefix('-')
            .unwrap_or(t)
            .bytes()
            .all(|c| c.is_ascii_digit())
    };
    if !integral(a) || !integral(b) {
        let (x, y) = (
            a.parse::<f64>().unwrap_or(f64::NAN),
            b.parse::<f64>().unwrap_or(f64::NAN),
        );
        return x.total_cmp(&y);
    }
    let (na, da) = a.strip_prefix('-').map_or((false, a), |d| (true, d));
    let (nb, db) = b.strip_prefix('-').map_or((false, b), |d| (true, d));
    match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        _ => {
            let mag = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if na {
                mag.reverse()
            } else {
                mag
            }
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Big(s) => f.write_str(s),
            Number::Float(x) => {
                if x.fract() == 0.0 && x.abs() < 1e15 {
                    #[allow(clippy::cast_possible_truncation)] // integral and in range
                    let i = *x as i64;
                    write!(f, "{i}")
                } else if x.abs() >= 1e21 || (x.abs() < 1e-6 && *x != 0.0) {
                    write!(f, "{x:e}")
                } else {
                    write!(f, "{x}")
                }
            }
        }
    }
}

/// A Rego value. Ordering follows OPA's: null < boolean < number < string < array < object < set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<Value, Value>),
    Set(BTreeSet<Value>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn int(i: i64) -> Value {
        Value::Number(Number::Int(i))
    }

    pub fn float(f: f64) -> Value {
        Value::Number(Number::Float(f))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The Rego type name, as OPA's type errors print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Set(_) => "set",
        }
    }

    /// Parses Rego value syntax as `opa_value_dump` writes it (JSON plus `{a, b}` sets, `set()`
    /// and non-string object keys). Also accepts plain JSON.
    pub fn parse_rego(text: &str) -> Result<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }

    /// Prints Rego value syntax that `opa_value_parse` reads back, sets included.
    pub fn to_rego(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, true);
        out
    }

    /// Prints JSON: sets become arrays and non-string keys are stringified, as OPA does.
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, false);
        out
    }

    fn write(&self, out: &mut String, rego: bool) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Value::String(s) => write_json_string(out, s),
            Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out, rego);
                }
                out.push(']');
            }
            Value::Set(s) => {
                if rego {
                    if s.is_empty() {
                        out.push_str("set()");
                        return;
                    }
                    out.push('{');
                } else {
                    out.push('[');
                }
                for (i, v) in s.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out, rego);
                }
                out.push(if rego { '}' } else { ']' });
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Value::String(s) => write_json_string(out, s),
                        other if rego => other.write(out, rego),
                        other => write_json_string(out, &other.to_json_string()),
                    }
                    out.push(':');
                    v.write(out, rego);
                }
                out.push('}');
            }
        }
    }

    /// Converts to `serde_json::Value` (sets become arrays, non-string keys are stringified).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => match n {
                Number::Int(i) => J::from(*i),
                Number::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
                Number::Big(s) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(J::Null, J::Number),
            },
            Value::String(s) => J::String(s.clone()),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Set(s) => J::Array(s.iter().map(Value::to_json).collect()),
            Value::Object(o) => J::Object(
                o.iter()
                    .map(|(k, v)| {
                        let key = match k {
                            Value::String(s) => s.clone(),
                            other => other.to_json_string(),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match v {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => Value::Number(
                n.as_i64()
                    .map(Number::Int)
                    .or_else(|| Number::parse(&n.to_string()))
                    .unwrap_or(Number::Float(n.as_f64().unwrap_or(f64::NAN))),
            ),
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (Value::String(k.clone()), Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rego())
    }
}

pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Nesting beyond this is rejected rather than risking the host's stack.
const MAX_DEPTH: usize = 512;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::ValueParse(format!("{what} at byte {}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn lit(&mut self, word: &str) -> bool {
        let end = self.i + word.len();
        if self.s.get(self.i..end) == Some(word.as_bytes()) {
            self.i = end;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("value nested too deeply"));
        }
        let v = match self.peek() {
            None => Err(self.err("unexpected end of value")),
            Some(b'n') if self.lit("null") => Ok(Value::Null),
            Some(b't') if self.lit("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.lit("false") => Ok(Value::Bool(false)),
            Some(b's') if self.lit("set()") => Ok(Value::Set(BTreeSet::new())),
            Some(b'"') => self.string().map(Value::String),
            Some(b'[') => self.array(),
            Some(b'{') => self.object_or_set(),
            Some(b'-' | b'.' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        };
        self.depth -= 1;
        v
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..self.i).unwrap_or_default())
            .map_err(|_| self.err("bad number"))?;
        Number::parse(text)
            .map(Value::Number)
            .ok_or_else(|| self.err("bad number"))
    }

    fn string(&mut self) -> Result<String> {
        // Caller saw the opening quote.
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' {
                    break;
                }
                self.i += 1;
            }
            let chunk = self.s.get(start..self.i).unwrap_or_default();
            out.push_str(std::str::from_utf8(chunk).map_err(|_| self.err("invalid UTF-8"))?);
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.i += 1;
                    let esc = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.lit("\\u") {
                                    let lo = self.hex4()?;
                                    if !(0xDC00..0xE000).contains(&lo) {
                                        return Err(self.err("invalid surrogate pair"));
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn array(&mut self) -> Result<Value> {
        self.i += 1;
        let mut items = Vec::new();
        if self.eat(b']') {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(Value::Array(items));
            }
            return Err(self.err("expected ',' or ']'"));
        }
    }

    fn object_or_set(&mut self) -> Result<Value> {
        self.i += 1;
        if self.eat(b'}') {
            return Ok(Value::Object(BTreeMap::new()));
        }
        let first = self.value()?;
        if self.eat(b':') {
            let mut obj = BTreeMap::new();
            let v = self.value()?;
            obj.insert(first, v);
            loop {
                if self.eat(b'}') {
                    return Ok(Value::Object(obj));
                }
                if !self.eat(b',') {
                    return Err(self.err("expected ',' or '}'"));
                }
                let k = self.value()?;
                if !self.eat(b':') {
                    return Err(self.err("expected ':'"));
                }
                let v = self.value()?;
                obj.insert(k, v);
            }
        }
        let mut set = BTreeSet::new();
        set.insert(first);
        loop {
            if self.eat(b'}') {
                return Ok(Value::Set(set));
            }
            if !self.eat(b',') {
                return Err(self.err("expected ',' or '}'"));
            }
            set.insert(self.value()?);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sets_and_keys() {
        let text = r#"{"a":[1,2.5,{3,"x"}],1:set(),"e":"q\"\n"}"#;
        let v = Value::parse_rego(text).unwrap();
        let again = Value::parse_rego(&v.to_rego()).unwrap();
        assert_eq!(v, again);
        assert!(v.to_rego().contains("set()"));
        assert_eq!(
            Value::parse_rego("{1, 2}").unwrap().to_json_string(),
            "[1,2]"
        );
    }

    #[test]
    fn big_and_odd_literals_survive() {
        assert_eq!(Value::parse_rego("2e308").unwrap().to_rego(), "2e308");
        assert_eq!(Value::parse_rego(".0").unwrap(), Value::int(0));
        assert!(Value::parse_rego("2e308").unwrap() > Value::int(i64::MAX));
    }

    #[test]
    fn big_integers_survive() {
        let v = Value::parse_rego("123456789012345678901234567890").unwrap();
        assert_eq!(v.to_rego(), "123456789012345678901234567890");
        assert!(Value::parse_rego("-99999999999999999999").unwrap() < Value::int(0));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "{",
            "[1,",
            "\"abc",
            "{1:}",
            "tru",
            "\"\\u12\"",
            "--1",
            "1e",
        ] {
            assert!(Value::parse_rego(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(10_000);
        assert!(Value::parse_rego(&deep).is_err());
    }

    #[test]
    fn orders_like_opa() {
        let mut vals = [
            Value::Set(BTreeSet::new()),
            Value::Object(BTreeMap::new()),
            Value::Array(vec![]),
            Value::str("a"),
            Value::int(1),
            Value::Bool(false),
            Value::Null,
        ];
        vals.sort();
        assert_eq!(vals.first(), Some(&Value::Null));
        assert_eq!(vals.last(), Some(&Value::Set(BTreeSet::new())));
        assert_eq!(Value::int(1), Value::float(1.0));
    }
}
