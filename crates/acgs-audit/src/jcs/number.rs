//! Numbers for RFC 8785: ECMAScript `Number::toString` of IEEE-754 doubles, and the rule ACGS
//! applies to integers that a double cannot hold.
//!
//! JCS reads every number as a double (RFC 8785 §3.2.2.3). A fraction or exponent is rounded to
//! the nearest double, as the RFC says. An integer literal, however, is accepted only when its
//! JCS form has exactly the same digits: every integer of magnitude up to 2^53 qualifies, and
//! beyond that only the integers JCS itself prints in full (such as 100000000000000000000).
//! Others (9007199254740993, which JCS would silently turn into 9007199254740992, or 10^21,
//! which it would print as `1e+21`) are refused with `number_out_of_range`: an audit record
//! must not change a value on its way in. Large identifiers belong in strings.

use crate::error::{Error, Result};

/// Up to this many digits an integer literal is below 2^53 (a 16-digit one may not be), so it
/// is exact and JCS prints it unchanged.
const SHORT_INTEGER_DIGITS: usize = 15;

/// Appends the ECMAScript serialisation of `x`; refuses NaN and the infinities.
pub fn write_double(out: &mut Vec<u8>, x: f64) -> Result<()> {
    if !x.is_finite() {
        return Err(Error::NumberOutOfRange(format!(
            "{x} has no JSON representation"
        )));
    }
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(es_text(&mut buf, x).as_bytes());
    Ok(())
}

/// ECMAScript `Number::toString` of a finite double (`-0` prints as `0`).
pub(crate) fn es_text(buf: &mut ryu_js::Buffer, x: f64) -> &str {
    if x == 0.0 {
        return "0";
    }
    buf.format_finite(x)
}

/// Whether `text` (a JSON number token) is an integer literal: no fraction, no exponent.
pub(crate) fn is_integer_token(text: &[u8]) -> bool {
    !text.iter().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// The double for a JSON number token that the grammar has already accepted, applying the
/// integer rule above.
pub(crate) fn token_value(text: &str) -> Result<f64> {
    let x: f64 = text
        .parse()
        .map_err(|_| Error::NumberOutOfRange(format!("{text} is not a number")))?;
    if !x.is_finite() {
        return Err(Error::NumberOutOfRange(format!(
            "{text} is beyond the range of an IEEE-754 double"
        )));
    }
    if is_integer_token(text.as_bytes()) {
        check_integer(text, x)?;
    }
    Ok(x)
}

/// The double for a decimal integer (`-?[0-9]+`, as Python's `str(int)` writes it), applying the
/// integer rule above.
pub fn integer_value(text: &str) -> Result<f64> {
    let x: f64 = text
        .parse()
        .map_err(|_| Error::NumberOutOfRange(format!("{text} is not an integer")))?;
    if !x.is_finite() {
        return Err(Error::NumberOutOfRange(format!(
            "{text} is beyond the range of an IEEE-754 double"
        )));
    }
    check_integer(text, x)?;
    Ok(x)
}

fn check_integer(text: &str, x: f64) -> Result<()> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.len() <= SHORT_INTEGER_DIGITS {
        return Ok(());
    }
    let mut buf = ryu_js::Buffer::new();
    let canonical = es_text(&mut buf, x);
    if canonical == text {
        Ok(())
    } else {
        Err(Error::NumberOutOfRange(format!(
            "integer {text} does not survive as an IEEE-754 double (JCS would write {canonical}); \
             send it as a string"
        )))
    }
}

/// Appends the canonical form of an integer, applying the integer rule above.
pub fn write_integer(out: &mut Vec<u8>, value: i128) -> Result<()> {
    const EXACT: i128 = 1 << 53;
    if (-EXACT..=EXACT).contains(&value) {
        // Exact, and JCS prints integers below 10^21 in full.
        out.extend_from_slice(value.to_string().as_bytes());
        return Ok(());
    }
    let text = value.to_string();
    let x = integer_value(&text)?;
    write_double(out, x)
}
