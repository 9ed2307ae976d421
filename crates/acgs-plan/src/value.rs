//! Rego values for the plan evaluator: cheap to clone (collections behind `Arc`, changed by
//! copy-on-write) and exact (numbers are decimals, never `f64`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use acgs_rego::decimal::{BigDec, Dec};

/// A Rego number, exact: a small decimal (`coef * 10^exp` with an `i64` coefficient) for the
/// everyday values, a big one past that. Kept small so a value is three words.
#[derive(Debug, Clone)]
pub enum Num {
    Small {
        coef: i64,
        exp: i32,
    },
    Big(Arc<BigDec>),
    /// A literal (from input, data or the plan) written otherwise than [`Num::text`] would
    /// write its value (`5.0`, `1e3`, `0.90`): OPA's Wasm hands builtins such numbers as written,
    /// and `sprintf` formats `5.0` unlike `5`, so the text is kept.
    Lit(Arc<Literal>),
}

/// A number as written, with its value.
#[derive(Debug)]
pub struct Literal {
    pub value: Num,
    pub text: Box<str>,
}

impl Num {
    /// A JSON number literal; `None` when the text is not one (or its exponent is absurd).
    pub fn parse(text: &str) -> Option<Num> {
        let value = match Dec::parse(text) {
            Some(d) => Num::from_dec(d),
            None => BigDec::parse(text).map(Num::from_big)?,
        };
        if value.text() == text {
            return Some(value);
        }
        Some(Num::Lit(Arc::new(Literal {
            value,
            text: text.into(),
        })))
    }

    /// The value, whatever its spelling.
    fn value(&self) -> &Num {
        match self {
            Num::Lit(l) => &l.value,
            other => other,
        }
    }

    #[inline]
    pub fn int(i: i64) -> Num {
        // Only a multiple of ten has trailing zeros to fold.
        if i % 10 != 0 {
            return Num::Small { coef: i, exp: 0 };
        }
        Num::Small { coef: i, exp: 0 }.normal()
    }

    /// Integers keep a zero exponent's canonical form (trailing zeros folded into it).
    fn normal(self) -> Num {
        match self {
            Num::Small { coef, exp } => {
                Num::from_dec(Dec::from_parts(i128::from(coef), exp).unwrap_or(Dec::ZERO))
            }
            big => big,
        }
    }

    pub fn from_dec(d: Dec) -> Num {
        let (coef, exp) = d.parts();
        match i64::try_from(coef) {
            Ok(coef) => Num::Small { coef, exp },
            Err(_) => Num::Big(Arc::new(BigDec::from_dec(d))),
        }
    }

    pub fn from_big(b: BigDec) -> Num {
        match b.to_dec() {
            Some(d) => Num::from_dec(d),
            None => Num::Big(Arc::new(b)),
        }
    }

    /// The fixed-width decimal, when the value is small.
    pub fn dec(&self) -> Option<Dec> {
        match self.value() {
            Num::Small { coef, exp } => Dec::from_parts(i128::from(*coef), *exp),
            _ => None,
        }
    }

    fn big(&self) -> BigDec {
        match (self.value(), self.dec()) {
            (Num::Big(b), _) => (**b).clone(),
            (_, Some(d)) => BigDec::from_dec(d),
            (_, None) => BigDec::from_dec(Dec::ZERO),
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value() {
            Num::Small { coef, exp: 0 } => Some(*coef),
            Num::Small { .. } => self.dec().and_then(Dec::as_i64),
            _ => None,
        }
    }

    pub fn is_integer(&self) -> bool {
        match self.value() {
            Num::Small { exp, .. } => *exp >= 0,
            Num::Big(b) => b.is_integer(),
            Num::Lit(_) => false,
        }
    }

    pub fn text(&self) -> String {
        match (self, self.dec()) {
            (Num::Lit(l), _) => l.text.to_string(),
            (Num::Big(b), _) => b.to_text(),
            (_, Some(d)) => {
                let (coef, exp) = d.parts();
                dec_text(coef, exp)
            }
            (_, None) => "0".to_owned(),
        }
    }

    fn op(
        &self,
        o: &Num,
        small: fn(Dec, Dec) -> Option<Dec>,
        big: fn(&BigDec, &BigDec) -> Option<BigDec>,
    ) -> Option<Num> {
        if let (Some(a), Some(b)) = (self.dec(), o.dec()) {
            if let Some(r) = small(a, b) {
                return Some(Num::from_dec(r));
            }
        }
        big(&self.big(), &o.big()).map(Num::from_big)
    }

    pub fn plus(&self, o: &Num) -> Option<Num> {
        self.op(o, Dec::plus, BigDec::plus)
    }

    pub fn minus(&self, o: &Num) -> Option<Num> {
        self.op(o, Dec::minus, BigDec::minus)
    }

    pub fn times(&self, o: &Num) -> Option<Num> {
        self.op(o, Dec::times, BigDec::times)
    }

    /// `None` for division by zero (and quotients past every bound).
    pub fn quotient(&self, o: &Num) -> Option<Num> {
        self.op(o, Dec::quotient, BigDec::quotient)
    }

    pub fn round(&self) -> Option<Num> {
        if let Some(r) = self.dec().and_then(Dec::round) {
            return Some(Num::from_dec(r));
        }
        self.big().round().map(Num::from_big)
    }

    pub fn is_zero(&self) -> bool {
        matches!(self.value(), Num::Small { coef: 0, .. })
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Num) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Num {}
impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Num) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Num {
    fn cmp(&self, other: &Num) -> Ordering {
        let (this, other) = (self.value(), other.value());
        if let (Num::Small { coef: a, exp: x }, Num::Small { coef: b, exp: y }) = (this, other) {
            if x == y {
                return a.cmp(b);
            }
        }
        if let (Some(a), Some(b)) = (this.dec(), other.dec()) {
            if let Some(o) = a.compare(b) {
                return o;
            }
        }
        this.big().compare(&other.big())
    }
}

/// [`Dec::to_text`] without the formatting machinery (numbers are written on every
/// arithmetic step): plain decimal notation while short, else `<coefficient>e<exponent>`.
fn dec_text(coef: i128, exp: i32) -> String {
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    let mut n = coef.unsigned_abs();
    loop {
        at -= 1;
        if let Some(b) = buf.get_mut(at) {
            // n % 10 < 10: the cast keeps it.
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    let digits = std::str::from_utf8(buf.get(at..).unwrap_or_default()).unwrap_or("0");
    let len = digits.len() as i64;
    let exp = i64::from(exp);
    let mut out = String::with_capacity(digits.len() + 24);
    if coef < 0 {
        out.push('-');
    }
    if exp >= 0 && len + exp <= 21 {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(exp).unwrap_or(0)));
    } else if exp < 0 && exp >= -(len + 6) {
        let point = len + exp;
        if point > 0 {
            let (int, frac) = digits.split_at(usize::try_from(point).unwrap_or(0));
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-point).unwrap_or(0),
            ));
            out.push_str(digits);
        }
    } else {
        out.push_str(digits);
        out.push('e');
        out.push_str(&exp.to_string());
    }
    out
}

/// A Rego value. Ordering follows OPA's: null < boolean < number < string < array < object < set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Bool(bool),
    Num(Num),
    Str(Arc<str>),
    Arr(Arc<Vec<Val>>),
    Obj(Arc<BTreeMap<Val, Val>>),
    Set(Arc<BTreeSet<Val>>),
}

impl PartialOrd for Val {
    #[inline]
    fn partial_cmp(&self, other: &Val) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order the variants are declared in (a derived order would be the same), with two
/// shortcuts for object lookups, where most comparisons are of short keys: strings that differ
/// in their first byte are ordered without a call to `memcmp`, and one allocation is equal to
/// itself without a look inside.
impl Ord for Val {
    #[inline]
    fn cmp(&self, other: &Val) -> Ordering {
        if let (Val::Str(a), Val::Str(b)) = (self, other) {
            if let (Some(x), Some(y)) = (a.as_bytes().first(), b.as_bytes().first()) {
                if x != y {
                    return x.cmp(y);
                }
            }
            return a.as_bytes().cmp(b.as_bytes());
        }
        self.cmp_other(other)
    }
}

impl Val {
    fn rank(&self) -> u8 {
        match self {
            Val::Null => 0,
            Val::Bool(_) => 1,
            Val::Num(_) => 2,
            Val::Str(_) => 3,
            Val::Arr(_) => 4,
            Val::Obj(_) => 5,
            Val::Set(_) => 6,
        }
    }

    fn cmp_other(&self, other: &Val) -> Ordering {
        match (self, other) {
            (Val::Null, Val::Null) => Ordering::Equal,
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Num(a), Val::Num(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Val::Arr(a), Val::Arr(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Val::Arr(a), Val::Arr(b)) => a.iter().cmp(b.iter()),
            (Val::Obj(a), Val::Obj(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Val::Obj(a), Val::Obj(b)) => a.iter().cmp(b.iter()),
            (Val::Set(a), Val::Set(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Val::Set(a), Val::Set(b)) => a.iter().cmp(b.iter()),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Val {
    pub fn str(s: &str) -> Val {
        Val::Str(Arc::from(s))
    }

    #[inline]
    pub fn int(i: i64) -> Val {
        Val::Num(Num::int(i))
    }

    pub fn empty_object() -> Val {
        Val::Obj(Arc::new(BTreeMap::new()))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "boolean",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Arr(_) => "array",
            Val::Obj(_) => "object",
            Val::Set(_) => "set",
        }
    }

    /// Parses JSON, or Rego value syntax as OPA's Wasm dumps it (sets as `{a, b}` or `set()`,
    /// non-string object keys). Numbers keep their exact value.
    pub fn parse(text: &[u8]) -> Result<Val, String> {
        let mut p = Parser {
            s: text,
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

    /// Rego value text (sets kept), which [`Val::parse`] reads back.
    pub fn to_rego(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, true);
        out
    }

    /// JSON text: sets become arrays and non-string keys are stringified, as OPA does.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, false);
        out
    }

    fn write(&self, out: &mut String, rego: bool) {
        match self {
            Val::Null => out.push_str("null"),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Num(n) => out.push_str(&n.text()),
            Val::Str(s) => acgs_rego::value::write_json_string(out, s),
            Val::Arr(a) => write_seq(out, '[', ']', a.iter(), rego),
            Val::Set(s) if rego && s.is_empty() => out.push_str("set()"),
            Val::Set(s) if rego => write_seq(out, '{', '}', s.iter(), rego),
            Val::Set(s) => write_seq(out, '[', ']', s.iter(), rego),
            Val::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Val::Str(s) => acgs_rego::value::write_json_string(out, s),
                        other if rego => other.write(out, rego),
                        other => acgs_rego::value::write_json_string(out, &other.to_json()),
                    }
                    out.push(':');
                    v.write(out, rego);
                }
                out.push('}');
            }
        }
    }

    /// The host builtins' value type (numbers go through their text).
    pub fn to_host(&self) -> acgs_rego::Value {
        use acgs_rego::{Number, Value as H};
        match self {
            Val::Null => H::Null,
            Val::Bool(b) => H::Bool(*b),
            Val::Num(n) => H::Number(Number::parse(&n.text()).unwrap_or(Number::Int(0))),
            Val::Str(s) => H::String(s.to_string()),
            Val::Arr(a) => H::Array(a.iter().map(Val::to_host).collect()),
            Val::Set(s) => H::Set(s.iter().map(Val::to_host).collect()),
            Val::Obj(o) => H::Object(o.iter().map(|(k, v)| (k.to_host(), v.to_host())).collect()),
        }
    }

    pub fn from_host(v: &acgs_rego::Value) -> Val {
        use acgs_rego::Value as H;
        match v {
            H::Null => Val::Null,
            H::Bool(b) => Val::Bool(*b),
            H::Number(n) => Num::parse(&n.to_string()).map_or(Val::Null, Val::Num),
            H::String(s) => Val::str(s),
            H::Array(a) => Val::Arr(Arc::new(a.iter().map(Val::from_host).collect())),
            H::Set(s) => Val::Set(Arc::new(s.iter().map(Val::from_host).collect())),
            H::Object(o) => Val::Obj(Arc::new(
                o.iter()
                    .map(|(k, v)| (Val::from_host(k), Val::from_host(v)))
                    .collect(),
            )),
        }
    }
}

fn write_seq<'a>(
    out: &mut String,
    open: char,
    close: char,
    items: impl Iterator<Item = &'a Val>,
    rego: bool,
) {
    out.push(open);
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        v.write(out, rego);
    }
    out.push(close);
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn json_number(text: &str) -> bool {
    let b = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let digits = |from: usize| {
        b.iter()
            .skip(from)
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let int = digits(0);
    if int == 0 || (int > 1 && b.first() == Some(&b'0')) {
        return false;
    }
    let mut i = int;
    if b.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// Nesting beyond this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i)
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

    fn value(&mut self) -> Result<Val, String> {
        self.ws();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("value nested too deeply"));
        }
        let v = match self.peek() {
            None => Err(self.err("unexpected end of value")),
            Some(b'n') if self.lit("null") => Ok(Val::Null),
            Some(b't') if self.lit("true") => Ok(Val::Bool(true)),
            Some(b'f') if self.lit("false") => Ok(Val::Bool(false)),
            Some(b's') if self.lit("set()") => Ok(Val::Set(Arc::new(BTreeSet::new()))),
            Some(b'"') => self.string().map(|s| Val::Str(Arc::from(s))),
            Some(b'[') => self.array(),
            Some(b'{') => self.object_or_set(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        };
        self.depth -= 1;
        v
    }

    fn number(&mut self) -> Result<Val, String> {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.i += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..self.i).unwrap_or_default())
            .map_err(|_| self.err("bad number"))?;
        if !json_number(text) {
            return Err(self.err("bad number"));
        }
        Num::parse(text)
            .map(Val::Num)
            .ok_or_else(|| self.err("bad number"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
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
                Some(b'\\') => {
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
                            let c = if (0xD800..0xDC00).contains(&hi) && self.lit("\\u") {
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("invalid surrogate pair"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    fn array(&mut self) -> Result<Val, String> {
        self.i += 1;
        let mut items = Vec::new();
        if self.eat(b']') {
            return Ok(Val::Arr(Arc::new(items)));
        }
        loop {
            items.push(self.value()?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Ok(Val::Arr(Arc::new(items)));
            }
            return Err(self.err("expected ',' or ']'"));
        }
    }

    fn object_or_set(&mut self) -> Result<Val, String> {
        self.i += 1;
        if self.eat(b'}') {
            return Ok(Val::empty_object());
        }
        let first = self.value()?;
        if self.eat(b':') {
            let mut obj = BTreeMap::new();
            let v = self.value()?;
            obj.insert(first, v);
            loop {
                if self.eat(b'}') {
                    return Ok(Val::Obj(Arc::new(obj)));
                }
                if !self.eat(b',') {
                    return Err(self.err("expected ',' or '}'"));
                }
                let k = self.value()?;
                if !self.eat(b':') {
                    return Err(self.err("expected ':'"));
                }
                let v = self.value()?;
                // JSON's last duplicate key wins, as in OPA's parser.
                obj.insert(k, v);
            }
        }
        let mut set = BTreeSet::new();
        set.insert(first);
        loop {
            if self.eat(b'}') {
                return Ok(Val::Set(Arc::new(set)));
            }
            if !self.eat(b',') {
                return Err(self.err("expected ',' or '}'"));
            }
            set.insert(self.value()?);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// The fast writer spells every small decimal as the shared one does.
    #[test]
    fn numbers_are_written_as_the_decimal_type_writes_them() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut coefs: Vec<i128> = vec![
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            i128::from(i64::MAX),
            i128::from(i64::MIN),
        ];
        for _ in 0..4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 19) as u32;
            let c = i128::from(x >> 8) % 10i128.pow(digits);
            coefs.push(if x & 1 == 0 { c } else { -c });
        }
        for coef in coefs {
            for exp in [
                -40, -30, -27, -26, -25, -22, -21, -20, -7, -6, -5, -2, -1, 0, 1, 2, 5, 19, 20, 21,
                22, 40,
            ] {
                let Some(d) = Dec::from_parts(coef, exp) else {
                    continue;
                };
                let (c, e) = d.parts();
                assert_eq!(dec_text(c, e), d.to_text(), "{coef}e{exp}");
                if let Ok(c64) = i64::try_from(c) {
                    assert_eq!(Num::Small { coef: c64, exp: e }.text(), d.to_text());
                }
            }
        }
    }
}
