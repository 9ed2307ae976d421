//! Checks in one pass, without allocating, that bytes are already the RFC 8785 form of
//! themselves. This is the chain verifier's hot path: stored payloads are canonical, so
//! confirming that is cheaper than canonicalising again and comparing.

use std::cmp::Ordering;

use crate::jcs::number::es_text;
use crate::jcs::string::cmp_escaped;
use crate::jcs::MAX_DEPTH;

/// Why and where the bytes stopped being canonical.
pub(crate) struct Mismatch {
    pub offset: usize,
    pub reason: &'static str,
}

/// Integer tokens up to this many digits are below 2^53, so their canonical form is themselves.
const SHORT_INTEGER_DIGITS: usize = 15;

pub(crate) fn scan(bytes: &[u8]) -> Result<(), Mismatch> {
    // Canonical form has no whitespace and writes control characters as escapes, so any byte
    // below 0x20 is wrong wherever it is. A branch-free fold lets the compiler vectorise this.
    if bytes.iter().fold(false, |acc, &b| acc | (b < 0x20)) {
        let offset = bytes.iter().position(|&b| b < 0x20).unwrap_or_default();
        return Err(Mismatch {
            offset,
            reason: "whitespace or a raw control character",
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Mismatch {
        offset: e.valid_up_to(),
        reason: "invalid UTF-8",
    })?;
    let mut c = Checker { text, pos: 0 };
    c.value(0)?;
    if c.pos != bytes.len() {
        return Err(c.fail("bytes after the JSON value"));
    }
    Ok(())
}

struct Checker<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Checker<'a> {
    fn fail(&self, reason: &'static str) -> Mismatch {
        Mismatch {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), Mismatch> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.fail(reason))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Mismatch> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nested deeper than the limit"));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.fail("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), Mismatch> {
        if self
            .text
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.fail("expected a JSON value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Mismatch> {
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut previous: Option<&'a str> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a property name"));
            }
            let at = self.pos;
            let key = self.string()?;
            if let Some(prev) = previous {
                match cmp_escaped(prev, key) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        return Err(Mismatch {
                            offset: at,
                            reason: "duplicate property name",
                        })
                    }
                    Ordering::Greater => {
                        return Err(Mismatch {
                            offset: at,
                            reason: "property names not in UTF-16 order",
                        })
                    }
                }
            }
            previous = Some(key);
            self.expect(b':', "expected ':' after a property name")?;
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Mismatch> {
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth + 1)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.fail("expected ',' or ']' in an array")),
            }
        }
    }

    /// A string in canonical form; returns its raw content (escapes left in).
    fn string(&mut self) -> Result<&'a str, Mismatch> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        loop {
            let rest = bytes.get(self.pos..).unwrap_or_default();
            let Some(stop) = memchr::memchr2(b'"', b'\\', rest) else {
                self.pos = bytes.len();
                return Err(self.fail("unterminated string"));
            };
            self.pos += stop;
            if self.peek() == Some(b'"') {
                let content = self.text.get(start..self.pos).unwrap_or_default();
                self.pos += 1;
                return Ok(content);
            }
            // A backslash: only the escapes JSON.stringify writes are canonical.
            match bytes.get(self.pos + 1) {
                Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                Some(b'u') => {
                    let hex = bytes.get(self.pos + 2..self.pos + 6);
                    let code = match hex {
                        Some([b'0', b'0', hi @ (b'0' | b'1'), lo]) => match lo {
                            b'0'..=b'9' => Some((hi - b'0') * 16 + (lo - b'0')),
                            b'a'..=b'f' => Some((hi - b'0') * 16 + (lo - b'a' + 10)),
                            _ => None,
                        },
                        _ => None,
                    };
                    match code {
                        // These five have short escapes, which canonical form uses instead.
                        Some(0x08 | 0x09 | 0x0a | 0x0c | 0x0d) | None => {
                            return Err(self.fail("escape not in canonical form"))
                        }
                        Some(_) => self.pos += 6,
                    }
                }
                _ => return Err(self.fail("escape not in canonical form")),
            }
        }
    }

    fn number(&mut self) -> Result<(), Mismatch> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let digits = |from: usize| {
            bytes
                .get(from..)
                .map_or(0, |r| r.iter().take_while(|b| b.is_ascii_digit()).count())
        };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => 1,
            Some(b'1'..=b'9') => digits(self.pos),
            _ => return Err(self.fail("expected a digit")),
        };
        self.pos += int_digits;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            let n = digits(self.pos + 1);
            if n == 0 {
                return Err(self.fail("expected a digit after '.'"));
            }
            self.pos += 1 + n;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            let n = digits(self.pos);
            if n == 0 {
                return Err(self.fail("expected a digit in the exponent"));
            }
            self.pos += n;
        }
        let token = self.text.get(start..self.pos).unwrap_or_default();
        if integer && int_digits <= SHORT_INTEGER_DIGITS {
            // Exact in a double and printed in full; only "-0" has another canonical form.
            return if token == "-0" {
                Err(Mismatch {
                    offset: start,
                    reason: "number not in canonical form",
                })
            } else {
                Ok(())
            };
        }
        let canonical = match token.parse::<f64>() {
            Ok(x) if x.is_finite() => {
                let mut buf = ryu_js::Buffer::new();
                es_text(&mut buf, x) == token
            }
            _ => false,
        };
        if canonical {
            Ok(())
        } else {
            Err(Mismatch {
                offset: start,
                reason: "number not in canonical form",
            })
        }
    }
}
