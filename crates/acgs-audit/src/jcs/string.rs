//! Strings for RFC 8785: the escaping of ECMAScript `JSON.stringify` (§3.2.2.2) and property
//! ordering by UTF-16 code units (§3.2.3).

use std::cmp::Ordering;

/// Appends `s` as a JSON string: `"` and `\` escaped, control characters as `\b \t \n \f \r` or
/// `\u00xx` (lowercase hex), everything else as UTF-8.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: Option<u8> = match b {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            0x08 => Some(b'b'),
            0x09 => Some(b't'),
            0x0a => Some(b'n'),
            0x0c => Some(b'f'),
            0x0d => Some(b'r'),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        out.push(b'\\');
        match short {
            Some(c) => out.push(c),
            None => {
                let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0');
                out.extend_from_slice(&[b'u', b'0', b'0', hi, lo]);
            }
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Where a character sorts among UTF-16 code units. Characters above U+FFFF become surrogate
/// pairs starting at 0xD800..0xDBFF, so they sort after U+0000..U+D7FF but before
/// U+E000..U+FFFF; among themselves the pair order equals code point order.
fn utf16_rank(c: char) -> u32 {
    let cp = u32::from(c);
    if (0xE000..=0xFFFF).contains(&cp) {
        cp + 0x20_0000
    } else {
        cp
    }
}

/// Orders two strings by their UTF-16 code units, as RFC 8785 sorts property names.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    crate::jcs::check::cmp_utf16_bytes(a.as_bytes(), b.as_bytes())
}

/// Characters of the content of a canonical JSON string (between the quotes), escapes decoded.
/// Only the escapes canonical form uses are understood; the checker admits no others.
pub(crate) struct EscapedChars<'a> {
    rest: &'a str,
}

impl<'a> EscapedChars<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        Self { rest: raw }
    }
}

impl Iterator for EscapedChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let mut chars = self.rest.chars();
        let c = chars.next()?;
        if c != '\\' {
            self.rest = chars.as_str();
            return Some(c);
        }
        let e = chars.next()?;
        let decoded = match e {
            'b' => '\u{8}',
            't' => '\t',
            'n' => '\n',
            'f' => '\u{c}',
            'r' => '\r',
            'u' => {
                let hex = chars.as_str().get(..4)?;
                let code = u32::from_str_radix(hex, 16).ok()?;
                chars = chars.as_str().get(4..)?.chars();
                char::from_u32(code)?
            }
            other => other,
        };
        self.rest = chars.as_str();
        Some(decoded)
    }
}

/// Orders two raw (escaped, canonical) string contents by UTF-16 code units of their values.
pub(crate) fn cmp_escaped(a: &str, b: &str) -> Ordering {
    if !a.contains('\\') && !b.contains('\\') {
        return cmp_utf16(a, b);
    }
    let mut xs = EscapedChars::new(a);
    let mut ys = EscapedChars::new(b);
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x != y => return utf16_rank(x).cmp(&utf16_rank(y)),
            _ => {}
        }
    }
}

#[cfg(test)]
// A panic is how a test fails.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut out = Vec::new();
        write_string(&mut out, s);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn escapes_like_json_stringify() {
        assert_eq!(written("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(
            written("\u{8}\t\n\u{c}\r"),
            r#""\b\t\n\f\r""#,
            "short escapes"
        );
        assert_eq!(written("\u{0}\u{1f}\u{b}"), r#""\u0000\u001f\u000b""#);
        assert_eq!(written("/\u{7f}\u{2028}€😂"), "\"/\u{7f}\u{2028}€😂\"");
    }

    #[test]
    fn utf16_order_puts_astral_between_bmp_ranges() {
        // U+10000 encodes as D800 DC00: after U+D7FF, before U+E000.
        assert_eq!(cmp_utf16("\u{d7ff}", "\u{10000}"), Ordering::Less);
        assert_eq!(cmp_utf16("\u{10000}", "\u{e000}"), Ordering::Less);
        assert_eq!(cmp_utf16("\u{ffff}", "\u{1f602}"), Ordering::Greater);
        assert_eq!(cmp_utf16("\u{1f602}", "\u{1f603}"), Ordering::Less);
        assert_eq!(cmp_utf16("a", "ab"), Ordering::Less);
        assert_eq!(cmp_utf16("ab", "ab"), Ordering::Equal);
        assert_eq!(cmp_utf16("é", "e"), Ordering::Greater);
    }

    #[test]
    fn escaped_comparison_decodes_escapes() {
        // "\n" (U+000A) sorts before "A"; raw bytes would say '\\' (0x5C) > 'A'.
        assert_eq!(cmp_escaped(r"\n", "A"), Ordering::Less);
        assert_eq!(cmp_escaped(r"\u001f", " "), Ordering::Less);
        assert_eq!(cmp_escaped(r#"\""#, "#"), Ordering::Less);
        assert_eq!(cmp_escaped(r"\\", "]"), Ordering::Less);
        assert_eq!(cmp_escaped(r"\\", r"\\"), Ordering::Equal);
    }
}
