//! A strict JSON parser (RFC 8259, I-JSON limits) into a small tree that the canonical writer
//! walks. Strict where serde_json is lenient for JCS: duplicate keys, lone surrogates and
//! integers that a double would alter are errors.

use crate::error::{Error, Result};
use crate::jcs::number::token_value;
use crate::jcs::string::cmp_utf16;
use crate::jcs::MAX_DEPTH;

pub(crate) enum Node {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Node>),
    /// Members sorted by UTF-16 code units of their names, no name twice.
    Object(Vec<(String, Node)>),
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Node> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::InvalidJson {
        offset: e.valid_up_to(),
        reason: "invalid UTF-8".into(),
    })?;
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    let node = p.value(0)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.err("unexpected bytes after the JSON value"));
    }
    Ok(node)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, reason: &str) -> Error {
        Error::InvalidJson {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested deeper than the limit"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Node::String(self.string()?)),
            Some(b't') => self.literal("true", Node::Bool(true)),
            Some(b'f') => self.literal("false", Node::Bool(false)),
            Some(b'n') => self.literal("null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &str, node: Node) -> Result<Node> {
        if self
            .text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.pos += word.len();
            Ok(node)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node> {
        self.pos += 1;
        let mut members: Vec<(String, Node)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a property name"));
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':', "expected ':' after a property name")?;
            self.skip_ws();
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
        members.sort_by(|a, b| cmp_utf16(&a.0, &b.0));
        if let Some(pair) = members.windows(2).find(|w| match w {
            [a, b] => a.0 == b.0,
            _ => false,
        }) {
            let name = pair.first().map(|m| m.0.clone()).unwrap_or_default();
            return Err(Error::DuplicateKey(name));
        }
        Ok(Node::Object(members))
    }

    fn array(&mut self, depth: usize) -> Result<Node> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("expected four hex digits after \\u"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..).unwrap_or_default();
            let Some(stop) = rest
                .bytes()
                .position(|b| b == b'"' || b == b'\\' || b < 0x20)
            else {
                self.pos = self.text.len();
                return Err(self.err("unterminated string"));
            };
            out.push_str(rest.get(..stop).unwrap_or_default());
            self.pos += stop;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = self.peek();
                    self.pos += 1;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let c = self.unicode_escape()?;
                            out.push(c);
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.err("invalid escape sequence"));
                        }
                    }
                }
                _ => return Err(self.err("control character in a string")),
            }
        }
    }

    /// After `\u`: one escaped code unit, or a surrogate pair written as two escapes.
    fn unicode_escape(&mut self) -> Result<char> {
        let at = self.pos;
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                let low = if self.text.get(self.pos..self.pos + 2) == Some("\\u") {
                    self.pos += 2;
                    self.hex4()?
                } else {
                    0
                };
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Error::InvalidString(format!(
                        "lone high surrogate \\u{first:04x} at byte {at}"
                    )));
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(Error::InvalidString(format!(
                    "lone low surrogate \\u{first:04x} at byte {at}"
                )))
            }
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))
    }

    fn number(&mut self) -> Result<Node> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits = |from: usize| {
            bytes
                .get(from..)
                .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count())
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.pos += digits(self.pos),
            _ => return Err(self.err("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let n = digits(self.pos);
            if n == 0 {
                return Err(self.err("expected a digit after '.'"));
            }
            self.pos += n;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let n = digits(self.pos);
            if n == 0 {
                return Err(self.err("expected a digit in the exponent"));
            }
            self.pos += n;
        }
        let token = self.text.get(start..self.pos).unwrap_or_default();
        token_value(token).map(Node::Number)
    }
}
