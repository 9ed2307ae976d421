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
    let mut c = Checker { bytes, pos: 0 };
    c.value(0)?;
    if c.pos != bytes.len() {
        return Err(c.fail("bytes after the JSON value"));
    }
    Ok(())
}

/// Flags (in each byte's high bit) the bytes a string scan must stop at: `"`, `\\`, control
/// characters (below 0x20) and non-ASCII bytes. Each subtraction flags its first match exactly
/// (borrows only disturb later bytes), so the lowest flag is always right.
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    let q = w ^ (ONES * u64::from(b'"'));
    let s = w ^ (ONES * u64::from(b'\\'));
    (q.wrapping_sub(ONES) & !q | s.wrapping_sub(ONES) & !s | w.wrapping_sub(ONES * 0x20) & !w | w)
        & HIGHS
}

/// The position of the first byte at or after `from` that a string scan must stop at, sixteen
/// bytes at a time. Most strings in an event end within the first window, so the loop rarely
/// runs twice and its exit is well predicted.
#[inline]
fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(window) = bytes
        .get(pos..pos + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let hits = special_bytes(u64::from_le_bytes(window));
        if hits != 0 {
            return Some(pos + (hits.trailing_zeros() / 8) as usize);
        }
        pos += 8;
    }
    bytes
        .get(pos..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
        .map(|i| pos + i)
}

/// The length of the well-formed UTF-8 sequence (RFC 3629: no overlongs, no surrogates, nothing
/// above U+10FFFF) that starts at `pos` with a non-ASCII byte, or None.
fn utf8_len(bytes: &[u8], pos: usize) -> Option<usize> {
    let cont = |i: usize| matches!(bytes.get(pos + i), Some(0x80..=0xBF));
    let second = |lo: u8, hi: u8| bytes.get(pos + 1).is_some_and(|b| (lo..=hi).contains(b));
    let len = match *bytes.get(pos)? {
        0xC2..=0xDF => 2,
        0xE0 if second(0xA0, 0xBF) => 3,
        0xE1..=0xEC | 0xEE..=0xEF if cont(1) => 3,
        0xED if second(0x80, 0x9F) => 3,
        0xF0 if second(0x90, 0xBF) => 4,
        0xF1..=0xF3 if cont(1) => 4,
        0xF4 if second(0x80, 0x8F) => 4,
        _ => return None,
    };
    (1..len).all(cont).then_some(len)
}

/// UTF-16 order of two raw (unescaped) UTF-8 strings: byte order, except that lead bytes
/// 0xEE/0xEF (U+E000..U+FFFF, single code units) sort after 0xF0..0xF4 (surrogate pairs).
/// Equal prefixes mean both strings have a character boundary at the first difference, so the
/// differing bytes are both lead bytes (or ASCII) or both continuation bytes, where plain
/// byte order is right.
pub(crate) fn cmp_utf16_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) else {
        return a.len().cmp(&b.len());
    };
    let rank = |c: Option<&u8>| {
        c.map_or(0, |&c| {
            if c == 0xEE || c == 0xEF {
                u16::from(c) + 0x100
            } else {
                u16::from(c)
            }
        })
    };
    rank(a.get(i)).cmp(&rank(b.get(i)))
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
    bytes: &'a [u8],
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
        self.bytes.get(self.pos).copied()
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
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.fail("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Mismatch> {
        if self
            .bytes
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
        let mut previous: Option<(&'a [u8], bool)> = None;
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail("expected a property name"));
            }
            let at = self.pos;
            let key = self.string()?;
            if let Some(prev) = previous {
                let order = if let (false, false, Some(&p), Some(&k)) =
                    (prev.1, key.1, prev.0.first(), key.0.first())
                {
                    // Names that differ in an ASCII first byte: byte order is UTF-16 order.
                    if p != k && p < 0x80 && k < 0x80 {
                        p.cmp(&k)
                    } else {
                        cmp_utf16_bytes(prev.0, key.0)
                    }
                } else if prev.1 || key.1 {
                    // Rare: keys with escapes. Both are valid UTF-8, checked by the scan.
                    match (std::str::from_utf8(prev.0), std::str::from_utf8(key.0)) {
                        (Ok(p), Ok(k)) => cmp_escaped(p, k),
                        _ => return Err(self.fail("invalid UTF-8")),
                    }
                } else {
                    cmp_utf16_bytes(prev.0, key.0)
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
            // Most member values are strings: skip the general dispatch for them.
            if self.peek() == Some(b'"') {
                self.string()?;
            } else {
                self.value(depth + 1)?;
            }
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
    #[inline]
    fn string(&mut self) -> Result<(&'a [u8], bool), Mismatch> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.bytes;
        let mut escaped = false;
        loop {
            let Some(stop) = find_special(bytes, self.pos) else {
                self.pos = bytes.len();
                return Err(self.fail("unterminated string"));
            };
            self.pos = stop;
            match bytes.get(stop) {
                Some(b'"') => {
                    let content = bytes.get(start..stop).unwrap_or_default();
                    self.pos += 1;
                    return Ok((content, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(0x80..=0xFF) => match utf8_len(bytes, stop) {
                    Some(n) => self.pos += n,
                    None => return Err(self.fail("invalid UTF-8")),
                },
                _ => return Err(self.fail("raw control character in a string")),
            }
        }
    }

    /// A backslash: only the escapes JSON.stringify writes are canonical.
    #[cold]
    fn escape(&mut self) -> Result<(), Mismatch> {
        let bytes = self.bytes;
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
        Ok(())
    }

    fn number(&mut self) -> Result<(), Mismatch> {
        let start = self.pos;
        let bytes = self.bytes;
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
        // The grammar above admitted only ASCII digits, signs, '.', 'e' and 'E'.
        let token = bytes
            .get(start..self.pos)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or_default();
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
    fn word_scan_finds_the_first_special_byte() {
        let special = |b: u8| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..3_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 200) as usize;
            let mut byte_state = state | 1;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    byte_state ^= byte_state << 13;
                    byte_state ^= byte_state >> 7;
                    byte_state ^= byte_state << 17;
                    let r = (byte_state >> 24) as u8;
                    // Mostly plain ASCII, sometimes one of the special bytes.
                    match r % 16 {
                        0 => b'"',
                        1 => b'\\',
                        2 => r % 0x20,
                        3 => 0x80 | r,
                        4 => 0x7f,
                        5 => 0x20,
                        _ => b'a' + r % 26,
                    }
                })
                .collect();
            let want = |from: usize| {
                text[from..]
                    .iter()
                    .position(|&b| special(b))
                    .map(|i| from + i)
            };
            for from in 0..=len {
                assert_eq!(
                    find_special(&text, from),
                    want(from),
                    "{text:?} from {from}"
                );
            }
        }
        assert_eq!(find_special(b"", 0), None);
        assert_eq!(find_special(b"abc", 5), None);
    }

    #[test]
    fn utf8_lengths_follow_rfc_3629() {
        for c in [
            '\u{80}',
            '\u{7ff}',
            '\u{800}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{ffff}',
            '\u{10000}',
            '\u{10ffff}',
        ] {
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            assert_eq!(utf8_len(s.as_bytes(), 0), Some(s.len()), "{c:?}");
        }
        // Overlong, surrogate, beyond U+10FFFF, truncated, stray continuation.
        for bad in [
            &[0xC0, 0x80][..],
            &[0xE0, 0x80, 0x80],
            &[0xED, 0xA0, 0x80],
            &[0xF4, 0x90, 0x80, 0x80],
            &[0xE2, 0x82],
            &[0x80],
            &[0xFF],
        ] {
            assert_eq!(utf8_len(bad, 0), None, "{bad:?}");
            assert!(std::str::from_utf8(bad).is_err());
        }
    }

    #[test]
    fn byte_order_with_the_lead_byte_fix_is_utf16_order() {
        let samples = [
            "",
            "a",
            "ab",
            "\u{7f}",
            "\u{80}",
            "é",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{fb33}",
            "\u{ffff}",
            "\u{10000}",
            "😀",
            "😂",
            "\u{10ffff}",
            "a😀",
            "a\u{ffff}",
        ];
        for a in samples {
            for b in samples {
                let want = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(
                    cmp_utf16_bytes(a.as_bytes(), b.as_bytes()),
                    want,
                    "{a:?} {b:?}"
                );
            }
        }
    }
}
