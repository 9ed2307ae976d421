//! A small JSON reader for the decision pipeline: it parses request bytes into a borrowed tree,
//! hashes that tree canonically for cache keys, and answers path look-ups for the fast path.
//!
//! Canonical means independent of whitespace, object key order and string escapes, and nothing
//! else: numbers are hashed by their literal text (so `1` and `1.0` are different keys, never
//! the same one), and an object with a repeated key is refused, because the policy's own parser
//! and this one might disagree on which value wins. Numbers that differ past a double's
//! precision (`2` and `2.0000000000000000001`) therefore never share a key. Equal numbers in
//! other spellings do not share one either, on purpose: OPA keeps a number's literal
//! (`json.Number`), so a policy that returns `input.n` answers `1E+1` for `1E+1` and `10` for
//! `10`; only their comparisons agree. Comparisons here ([`Json::compare_number`],
//! [`Json::equals`]) are exact, by decimal value, as OPA's are.

use std::borrow::Cow;

use xxhash_rust::xxh3::Xxh3;

use crate::native::Dec;
use crate::value::write_json_string;

/// Deeper documents are refused rather than risk the stack (serde_json stops at 128 too).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's literal text, already checked against the JSON grammar.
    Num(&'a str),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members sorted by key; keys are unique.
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Syntax(usize),
    TooDeep,
    DuplicateKey(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Syntax(at) => write!(f, "invalid JSON at byte {at}"),
            ParseError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
            ParseError::DuplicateKey(k) => write!(f, "object repeats the key {k:?}"),
        }
    }
}

impl<'a> Json<'a> {
    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &'a [u8]) -> Result<Json<'a>, ParseError> {
        // One UTF-8 check of the whole text lets each string be sliced from it instead of
        // checked on its own (a third of a parse's time went there). Slices start and end at
        // quotes, so they are char boundaries; text that is not UTF-8 takes the checking path,
        // with the same errors as before.
        let mut p = Parser {
            s: text,
            text: std::str::from_utf8(text).ok(),
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(ParseError::Syntax(p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(members) => members
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .and_then(|i| members.get(i))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of object keys.
    pub fn path<S: AsRef<str>>(&self, path: &[S]) -> Option<&Json<'a>> {
        path.iter().try_fold(self, |v, k| v.get(k.as_ref()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Feeds the canonical form into `h`: a tagged, length-prefixed encoding, so two different
    /// trees never produce the same byte stream.
    pub fn hash_into(&self, h: &mut Xxh3) {
        match self {
            Json::Null => h.update(b"n"),
            Json::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
            Json::Num(n) => {
                h.update(b"#");
                h.update(&(n.len() as u64).to_le_bytes());
                h.update(n.as_bytes());
            }
            Json::Str(s) => {
                h.update(b"s");
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Json::Arr(items) => {
                h.update(b"[");
                h.update(&(items.len() as u64).to_le_bytes());
                for v in items {
                    v.hash_into(h);
                }
            }
            Json::Obj(members) => {
                h.update(b"{");
                h.update(&(members.len() as u64).to_le_bytes());
                for (k, v) in members {
                    h.update(&(k.len() as u64).to_le_bytes());
                    h.update(k.as_bytes());
                    v.hash_into(h);
                }
            }
        }
    }

    /// The exact order of this number and a number literal (`None` when this is not a number,
    /// or either cannot be compared): by decimal value, never through a double, as OPA
    /// compares numbers.
    pub fn compare_number(&self, literal: &str) -> Option<std::cmp::Ordering> {
        match self {
            Json::Num(n) => Dec::compare_literals(n, literal),
            _ => None,
        }
    }

    /// Equality with a `serde_json::Value` from bundle data, numbers compared exactly by value
    /// as Rego compares them (`1 == 1.0 == 1e0`, `1 != 1.0000000000000000001`).
    pub fn equals(&self, other: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (self, other) {
            (Json::Null, V::Null) => true,
            (Json::Bool(a), V::Bool(b)) => a == b,
            (Json::Num(_), V::Number(b)) => {
                self.compare_number(&b.to_string()) == Some(std::cmp::Ordering::Equal)
            }
            (Json::Str(a), V::String(b)) => a == b,
            (Json::Arr(a), V::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Json::Obj(a), V::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(k.as_ref()).is_some_and(|w| v.equals(w)))
            }
            _ => false,
        }
    }
}

impl Json<'_> {
    /// Writes the document as compact JSON with sorted keys and every number as the client
    /// spelt it: the exact value goes on to the policy, never a double's rounding of it.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_string(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_json(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// [`Json::write_json`] into a new buffer.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64);
        self.write_json(&mut out);
        out.into_bytes()
    }
}

/// A JSON string, as [`write_json_string`] writes it; most strings need no escape and are
/// copied whole rather than a character at a time.
fn write_string(out: &mut String, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        write_json_string(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

impl<'a> Json<'a> {
    /// `over` laid over `base`: objects merge key by key (recursively), anything else in
    /// `over` replaces what `base` has. The batch API's `common_input` under each input.
    pub fn merged(base: &Json<'a>, over: &Json<'a>) -> Json<'a> {
        let (Json::Obj(b), Json::Obj(o)) = (base, over) else {
            return over.clone();
        };
        let mut out: Vec<(Cow<'a, str>, Json<'a>)> = b.clone();
        for (k, v) in o {
            match out.binary_search_by(|(key, _)| key.as_ref().cmp(k.as_ref())) {
                Ok(i) => {
                    if let Some(slot) = out.get_mut(i) {
                        slot.1 = Json::merged(&slot.1, v);
                    }
                }
                Err(i) => out.insert(i, (k.clone(), v.clone())),
            }
        }
        Json::Obj(out)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    /// `s` as text, when it is UTF-8.
    text: Option<&'a str>,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err<T>(&self) -> Result<T, ParseError> {
        Err(ParseError::Syntax(self.i))
    }

    fn lit(&mut self, word: &[u8], v: Json<'a>) -> Result<Json<'a>, ParseError> {
        if self.s.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err()
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit(b"true", Json::Bool(true)),
            Some(b'f') => self.lit(b"false", Json::Bool(false)),
            Some(b'n') => self.lit(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err(),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.i += 1;
        let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err();
            }
            let k = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return self.err();
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth)?;
            members.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return self.err(),
            }
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = members
            .windows(2)
            .find(|w| matches!(w, [a, b] if a.0 == b.0))
        {
            let key = w.first().map(|(k, _)| k.to_string()).unwrap_or_default();
            return Err(ParseError::DuplicateKey(key));
        }
        Ok(Json::Obj(members))
    }

    fn array(&mut self, depth: usize) -> Result<Json<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return self.err(),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json<'a>, ParseError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err(),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.err();
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.err();
            }
        }
        let text = self
            .s
            .get(start..self.i)
            .and_then(|b| std::str::from_utf8(b).ok());
        match text {
            Some(t) => Ok(Json::Num(t)),
            None => self.err(),
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return self.err(),
            };
            v = v * 16 + u32::from(d);
            self.i += 1;
        }
        Ok(v)
    }

    /// A string; borrowed when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.i += 1;
        let start = self.i;
        // Fast scan: most strings have no escapes.
        loop {
            match self.peek() {
                Some(b'"') => {
                    let end = self.i;
                    self.i += 1;
                    if let Some(t) = self.text.and_then(|t| t.get(start..end)) {
                        return Ok(Cow::Borrowed(t));
                    }
                    let raw = self.s.get(start..end).unwrap_or_default();
                    return match std::str::from_utf8(raw) {
                        Ok(s) => Ok(Cow::Borrowed(s)),
                        Err(_) => Err(ParseError::Syntax(start)),
                    };
                }
                Some(b'\\') => break,
                Some(c) if c < 0x20 => return self.err(),
                Some(_) => self.i += 1,
                None => return self.err(),
            }
        }
        let mut buf: Vec<u8> = self.s.get(start..self.i).unwrap_or_default().to_vec();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(buf)
                        .map(Cow::Owned)
                        .map_err(|_| ParseError::Syntax(start));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek();
                    self.i += 1;
                    let ch = match c {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return self.err();
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err();
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            match char::from_u32(code) {
                                Some(ch) => ch,
                                None => return self.err(),
                            }
                        }
                        _ => return self.err(),
                    };
                    let mut tmp = [0u8; 4];
                    buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                }
                Some(c) if c < 0x20 => return self.err(),
                Some(c) => {
                    buf.push(c);
                    self.i += 1;
                }
                None => return self.err(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(s: &str) -> u128 {
        let mut h = Xxh3::new();
        Json::parse(s.as_bytes()).unwrap().hash_into(&mut h);
        h.digest128()
    }

    #[test]
    fn strings_are_written_as_the_character_writer_writes_them() {
        for text in [
            "",
            "plain",
            "h\u{e9}llo \u{1f600}",
            "quote \" and \\ backslash",
            "line\nbreak\ttab\r",
            "\u{0}\u{1f}\u{7f}",
            "\u{2028}\u{feff}</script>",
        ] {
            let (mut fast, mut slow) = (String::new(), String::new());
            write_string(&mut fast, text);
            write_json_string(&mut slow, text);
            assert_eq!(fast, slow, "{text:?}");
        }
    }

    #[test]
    fn strings_are_utf8_checked_with_or_without_the_whole_text_check() {
        let doc = Json::parse("{\"k\":\"h\u{e9}llo \u{1f600}\"}".as_bytes()).unwrap();
        assert_eq!(
            doc.get("k").and_then(Json::as_str),
            Some("h\u{e9}llo \u{1f600}")
        );
        // Not UTF-8 inside a string: refused where the string starts, as before.
        assert_eq!(
            Json::parse(b"{\"k\":\"a\xff\"}"),
            Err(ParseError::Syntax(6))
        );
        // Not UTF-8 elsewhere, with valid strings before it: still a syntax error.
        assert!(Json::parse(b"{\"k\":\"a\"}\xff").is_err());
        assert!(Json::parse(b"{\"k\":\"a\",\"\xc3\":1}").is_err());
    }

    #[test]
    fn canonical_forms_share_a_key() {
        assert_eq!(
            key(r#"{"a":1,"b":[true,null]}"#),
            key(r#" { "b" : [ true , null ], "a":1 } "#)
        );
        assert_eq!(key(r#"{"k":"A"}"#), key(r#"{"k":"\u0041"}"#));
        assert_eq!(key(r#"{"k":"😀"}"#), key(r#"{"k":"\ud83d\ude00"}"#));
    }

    #[test]
    fn different_inputs_never_share_a_key() {
        let docs = [
            r#"{"a":1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":"1"}"#,
            r#"{"a":[1]}"#,
            r#"{"a":{"1":null}}"#,
            r#"{"ab":1}"#,
            r#"{"a":null}"#,
            r#"{"a":true}"#,
            r#"{"a":false}"#,
            r#"{}"#,
            r#"[]"#,
            r#"[[]]"#,
            r#"[{}]"#,
            r#""""#,
            r#"["a","b"]"#,
            r#"["ab"]"#,
            r#"["a,b"]"#,
            "0",
            "-0",
            // Numbers a double cannot tell apart are still different inputs.
            r#"{"a":10}"#,
            r#"{"a":10.000000000000000001}"#,
            r#"{"a":9.999999999999999999}"#,
            r#"{"a":0.1}"#,
            r#"{"a":0.1000000000000000055511151231257827}"#,
            r#"{"a":1e400}"#,
            r#"{"a":1e401}"#,
        ];
        let keys: std::collections::HashSet<u128> = docs.iter().map(|d| key(d)).collect();
        assert_eq!(keys.len(), docs.len());
    }

    #[test]
    fn rejects_bad_documents_without_panicking() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\"}",
            "01",
            "1.",
            "1e",
            "-",
            "\"\\x\"",
            "\"\\ud800\"",
            "nul",
            "[1] x",
            "\"a\u{1}\"",
            "{\"a\":1,}",
            "\"\\u12\"",
        ] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Json::parse(br#"{"a":1,"a":2}"#),
            Err(ParseError::DuplicateKey(k)) if k == "a"
        ));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(Json::parse(deep.as_bytes()), Err(ParseError::TooDeep));
        for n in 0..2000u32 {
            let bytes: Vec<u8> = (0..(n % 17))
                .map(|i| ((n * 31 + i * 7) % 256) as u8)
                .collect();
            let _ = Json::parse(&bytes);
        }
    }

    #[test]
    fn writes_numbers_as_spelt_and_merges_objects() {
        let text = r#" {"b": [1E+1, 10.000000000000000001, -0, 0.1e2], "a": "\u00e9\"\n"} "#;
        let doc = Json::parse(text.as_bytes()).unwrap();
        let out = doc.to_json_bytes();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"a\":\"\u{e9}\\\"\\n\",\"b\":[1E+1,10.000000000000000001,-0,0.1e2]}"
        );
        // The output reads back as the same document.
        assert_eq!(Json::parse(&out).unwrap(), doc);
        let base = Json::parse(br#"{"c":{"x":1,"y":2},"k":1e400,"z":[1]}"#).unwrap();
        let over =
            Json::parse(br#"{"c":{"y":3.000000000000000000001},"z":{"n":1},"a":0}"#).unwrap();
        let merged = Json::merged(&base, &over).to_json_bytes();
        assert_eq!(
            std::str::from_utf8(&merged).unwrap(),
            r#"{"a":0,"c":{"x":1,"y":3.000000000000000000001},"k":1e400,"z":{"n":1}}"#
        );
        let scalar = Json::parse(b"7.0").unwrap();
        assert_eq!(Json::merged(&base, &scalar), scalar);
    }

    #[test]
    fn paths_and_equality() {
        let doc = br#"{"context":{"agent":{"trust_level":0.9}},"action":"x","n":1}"#;
        let v = Json::parse(doc).unwrap();
        assert_eq!(
            v.path(&["context", "agent", "trust_level"])
                .unwrap()
                .as_f64(),
            Some(0.9)
        );
        assert_eq!(v.get("action").unwrap().as_str(), Some("x"));
        assert!(v.path(&["context", "nope"]).is_none());
        assert!(v.get("n").unwrap().equals(&serde_json::json!(1.0)));
        assert!(!v.get("n").unwrap().equals(&serde_json::json!("1")));
        // Numbers compare exactly: a digit past a double's precision is a different number.
        for (text, equal) in [
            ("1e0", true),
            ("0.1E1", true),
            ("1.0000000000000000001", false),
        ] {
            let doc = format!("{{\"n\":{text}}}");
            let v = Json::parse(doc.as_bytes()).unwrap();
            assert_eq!(
                v.get("n").unwrap().equals(&serde_json::json!(1)),
                equal,
                "{text}"
            );
        }
    }
}
