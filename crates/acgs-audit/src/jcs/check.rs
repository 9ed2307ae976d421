//! Checks in one pass, without allocating, that bytes are already the RFC 8785 form of
//! themselves. This is the chain verifier's hot path: stored payloads are canonical, so
//! confirming that is cheaper than canonicalising again and comparing.

use std::cmp::Ordering;

use crate::jcs::number::es_text;
use crate::jcs::string::{cmp_escaped, cmp_utf16};
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

/// The position of the first `"` or `\\` at or after `from`, eight bytes at a time: short
/// strings dominate events, and a word loop beats a SIMD call's set-up on them.
fn find_quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut pos = from;
    while let Some(word) = bytes
        .get(pos..pos + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let w = u64::from_le_bytes(word);
        let q = w ^ (ONES * u64::from(b'"'));
        let s = w ^ (ONES * u64::from(b'\\'));
        // A zero byte in q or s is a match; this flags the first one exactly (borrows only
        // disturb the bytes after it).
        let hits = (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s) & HIGHS;
        if hits != 0 {
            return Some(pos + (hits.trailing_zeros() / 8) as usize);
        }
        pos += 8;
    }
    bytes
        .get(pos..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| pos + i)
}

/// Whether `token` (grammatical) is `-?I.F` with at most 15 significant digits, no trailing
/// zero in `F`, and a value of at least 10^-6 when `I` is 0. Such a token is canonical: decimals
/// of up to 15 significant digits map to distinct doubles (DBL_DIG), so the shortest form of
/// its double is its own digits, and ECMAScript prints that range without an exponent. This
/// spares the common short fractions a parse and a print.
fn is_short_decimal(token: &str) -> bool {
    let unsigned = token.strip_prefix('-').unwrap_or(token);
    let Some((int, frac)) = unsigned.split_once('.') else {
        return false;
    };
    if frac.is_empty() || frac.ends_with('0') || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if int == "0" {
        let zeros = frac.bytes().take_while(|&b| b == b'0').count();
        zeros <= 5 && frac.len() - zeros <= 15
    } else {
        int.len() + frac.len() <= 15
    }
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
            Some(b'"') => self.string().map(drop),
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
        let mut previous: Option<(&'a str, bool)> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a property name"));
            }
            let at = self.pos;
            let key = self.string()?;
            if let Some(prev) = previous {
                let order = if prev.1 || key.1 {
                    cmp_escaped(prev.0, key.0)
                } else {
                    cmp_utf16(prev.0, key.0)
                };
                match order {
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

    /// A string in canonical form; returns its raw content (escapes left in) and whether it
    /// holds any escape.
    fn string(&mut self) -> Result<(&'a str, bool), Mismatch> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut escaped = false;
        loop {
            let Some(stop) = find_quote_or_backslash(bytes, self.pos) else {
                self.pos = bytes.len();
                return Err(self.fail("unterminated string"));
            };
            self.pos = stop;
            if self.peek() == Some(b'"') {
                let content = self.text.get(start..self.pos).unwrap_or_default();
                self.pos += 1;
                return Ok((content, escaped));
            }
            escaped = true;
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
        if is_short_decimal(token) {
            return Ok(());
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

#[cfg(test)]
// A panic is how a test fails.
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn slow(token: &str) -> bool {
        let x: f64 = token.parse().unwrap();
        let mut buf = ryu_js::Buffer::new();
        es_text(&mut buf, x) == token
    }

    #[test]
    fn short_decimal_shortcut_agrees_with_printing() {
        for token in [
            "0.25",
            "-0.25",
            "0.1",
            "0.000001",
            "0.0000001",
            "0.00000123",
            "123456789012345.6",
            "12345678901234.5",
            "0.123456789012345",
            "0.1234567890123456",
            "1.5",
            "100.5",
            "0.3333333333333333",
            "333333333.3333333",
            "9.999999999999997",
            "0.5e1",
        ] {
            if is_short_decimal(token) {
                assert!(slow(token), "{token}");
            }
        }
        assert!(is_short_decimal("0.000001"));
        assert!(!is_short_decimal("0.0000001"));
        assert!(!is_short_decimal("1.50"));
        // Random decimals: the shortcut never accepts what printing would not.
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut accepted = 0;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let int_len = (state % 8) as usize;
            let frac_len = 1 + (state >> 8) as usize % 17;
            let digits = format!("{:020}", state >> 3);
            let int = if int_len == 0 {
                "0".to_string()
            } else {
                let d = &digits[..int_len];
                match d.strip_prefix('0') {
                    Some(rest) => format!("1{rest}"),
                    None => d.to_string(),
                }
            };
            let frac = &digits[20 - frac_len..];
            let token = format!("{int}.{frac}");
            if is_short_decimal(&token) {
                accepted += 1;
                assert!(slow(&token), "{token}");
            }
        }
        assert!(accepted > 10_000);
    }

    #[test]
    fn word_scan_finds_the_first_quote_or_backslash() {
        let text = b"abcdefghij\\klmnop\"qrstuvwxyz\"";
        for from in 0..text.len() {
            let want = text[from..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
                .map(|i| from + i);
            assert_eq!(find_quote_or_backslash(text, from), want, "from {from}");
        }
        assert_eq!(find_quote_or_backslash(b"", 0), None);
        assert_eq!(find_quote_or_backslash(b"abc", 5), None);
        // High bytes (UTF-8) next to the targets.
        let utf8 = "\u{e9}\u{e9}\u{e9}\u{e9}\"".as_bytes();
        assert_eq!(find_quote_or_backslash(utf8, 0), Some(8));
    }
}
