//! units.parse and units.parse_bytes.
//!
//! OPA computes `units.parse` exactly (a `big.Rat`) and `units.parse_bytes` in 64-bit binary
//! floating point (`big.Float`, rounding to nearest even at each step, then truncating). Both
//! are reproduced here: the first with decimal digit strings, the second with a small
//! arbitrary-precision binary float that rounds exactly where Go's does.

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{ToPrimitive, Zero};

use super::{fail, ok, str_operand};
use crate::builtins::{BuiltinError, BuiltinResult, Context};
use crate::value::{Number, Value};

/// Splits "12.5Ki" into ("12.5", "Ki") the way OPA does, refusing exponents over six digits.
fn split_amount(s: &str) -> Result<(&str, &str), ()> {
    let b = s.as_bytes();
    let mut first_unit = None;
    let mut idx = 0;
    while let Some(&c) = b.get(idx) {
        let numeric = c.is_ascii_digit() || c == b'.';
        if !numeric && !matches!(c, b'e' | b'E' | b'+' | b'-') {
            first_unit = Some(idx);
            break;
        }
        if c == b'e' || c == b'E' {
            let next = b.get(idx + 1).copied();
            if !next.is_some_and(|n| n.is_ascii_digit() || n == b'+' || n == b'-') {
                first_unit = Some(idx);
                break;
            }
            if matches!(next, Some(b'+' | b'-')) {
                idx += 1;
            }
            let exp_start = idx + 1;
            let mut exp_end = exp_start;
            while b.get(exp_end).is_some_and(u8::is_ascii_digit) {
                exp_end += 1;
            }
            if exp_end - exp_start > 6 {
                return Err(());
            }
        }
        idx += 1;
    }
    Ok(match first_unit {
        None => (s, ""),
        Some(i) => (
            s.get(..i).unwrap_or_default(),
            s.get(i..).unwrap_or_default(),
        ),
    })
}

/// A decimal literal as Go's big number scanners accept it: sign, digits with at most one
/// point, optional exponent. Value = (-1)^neg × digits × 10^exp.
struct Decimal {
    neg: bool,
    digits: BigUint,
    exp: i64,
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let (mantissa, exp_part) = match rest.find(['e', 'E']) {
        Some(i) => (rest.get(..i)?, Some(rest.get(i + 1..)?)),
        None => (rest, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let mut exp: i64 = 0;
    if let Some(e) = exp_part {
        let (eneg, edigits) = match e.as_bytes().first() {
            Some(b'-') => (true, e.get(1..)?),
            Some(b'+') => (false, e.get(1..)?),
            _ => (false, e),
        };
        if edigits.is_empty() || !all_digits(edigits) || edigits.len() > 12 {
            return None;
        }
        exp = edigits.parse().ok()?;
        if eneg {
            exp = -exp;
        }
    }
    let joined = format!("{int_part}{frac_part}");
    let digits = BigUint::parse_bytes(joined.as_bytes(), 10)?;
    exp -= i64::try_from(frac_part.len()).ok()?;
    Some(Decimal { neg, digits, exp })
}

fn number_from_integer_text(text: String) -> Value {
    match text.parse::<i64>() {
        Ok(i) => Value::int(i),
        Err(_) => Value::Number(Number::Big(text)),
    }
}

/// `digits × 10^exp` with OPA's output rules: exact integers print as integers, anything
/// else as a decimal rounded half away from zero to ten places.
fn decimal_text(neg: bool, digits: &BigUint, exp: i64) -> Option<String> {
    let mut text = digits.to_str_radix(10);
    let is_zero = digits.is_zero();
    if exp >= 0 {
        if !is_zero {
            text.push_str(&"0".repeat(usize::try_from(exp).ok()?));
        }
        if neg && !is_zero {
            text.insert(0, '-');
        }
        return Some(text);
    }
    let shift = usize::try_from(exp.unsigned_abs()).ok()?;
    if text.len() <= shift {
        text = format!("{}{text}", "0".repeat(shift - text.len() + 1));
    }
    let (int_part, frac) = text.split_at(text.len() - shift);
    if frac.bytes().all(|c| c == b'0') {
        let int_text = int_part.trim_start_matches('0');
        let int_text = if int_text.is_empty() { "0" } else { int_text };
        let signed = if neg && int_text != "0" {
            format!("-{int_text}")
        } else {
            int_text.to_owned()
        };
        return Some(signed);
    }
    // Round to ten decimal places, halves away from zero.
    let mut kept: Vec<u8> = format!(
        "{int_part}{}",
        frac.get(..10.min(frac.len())).unwrap_or_default()
    )
    .into_bytes();
    kept.extend(std::iter::repeat_n(
        b'0',
        10usize.saturating_sub(frac.len()),
    ));
    if frac.as_bytes().get(10).is_some_and(|&d| d >= b'5') {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, b'1');
                break;
            }
            i -= 1;
            if let Some(d) = kept.get_mut(i) {
                if *d == b'9' {
                    *d = b'0';
                } else {
                    *d += 1;
                    break;
                }
            }
        }
    }
    let kept = String::from_utf8(kept).ok()?;
    let (ip, fp) = kept.split_at(kept.len() - 10);
    let ip = ip.trim_start_matches('0');
    Some(format!(
        "{}{}.{fp}",
        if neg { "-" } else { "" },
        if ip.is_empty() { "0" } else { ip }
    ))
}

/// A number from OPA's output text: integers stay exact, decimals become floats.
fn number_from_text(text: String) -> Option<Value> {
    if text.contains('.') {
        Number::parse(&text).map(Value::Number)
    } else {
        Some(number_from_integer_text(text))
    }
}

pub(super) fn parse(args: &[Value], _: &Context) -> BuiltinResult {
    let text = parse_text(str_operand(args, 1)?)?;
    let value = number_from_text(text)
        .ok_or_else(|| BuiltinError("units.parse: could not parse amount to a number".into()))?;
    ok(value)
}

/// `units.parse` as OPA's decimal text.
fn parse_text(raw: &str) -> Result<String, BuiltinError> {
    let s = raw.replace('"', "");
    if s.contains(' ') {
        return fail("units.parse: spaces not allowed in resource strings");
    }
    let Ok((num, unit)) = split_amount(&s) else {
        return fail("units.parse: exponent too large");
    };
    if num.is_empty() {
        return fail("units.parse: no amount provided");
    }
    // Only the first letter of a unit is case-sensitive (m is milli, M is mega).
    let mut unit_chars = unit.chars();
    let unit: String = match unit_chars.next() {
        Some(first) => std::iter::once(first)
            .chain(unit_chars.as_str().to_lowercase().chars())
            .collect(),
        None => String::new(),
    };
    let factor: Option<u64> = match unit.as_str() {
        "m" => None,
        "" => Some(1),
        "k" | "K" => Some(1000),
        "ki" | "Ki" => Some(1 << 10),
        "M" => Some(1_000_000),
        "mi" | "Mi" => Some(1 << 20),
        "g" | "G" => Some(1_000_000_000),
        "gi" | "Gi" => Some(1 << 30),
        "t" | "T" => Some(1_000_000_000_000),
        "ti" | "Ti" => Some(1 << 40),
        "p" | "P" => Some(1_000_000_000_000_000),
        "pi" | "Pi" => Some(1 << 50),
        "e" | "E" => Some(1_000_000_000_000_000_000),
        "ei" | "Ei" => Some(1 << 60),
        _ => return fail(format!("units.parse: unit {unit} not recognized")),
    };
    let Some(d) = parse_decimal(num) else {
        return fail("units.parse: could not parse amount to a number");
    };
    let (digits, exp) = match factor {
        Some(f) => (d.digits * f, d.exp),
        None => {
            // OPA multiplies by the float64 nearest 0.001, which is c/2^60 for an odd c;
            // c/2^60 = c·5^60/10^60, so the product stays a decimal.
            let bits = 0.001f64.to_bits();
            let mant = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
            let e2 = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0) - 1075;
            let tz = mant.trailing_zeros();
            let c = mant >> tz;
            let pow2 = -(e2 + i64::from(tz));
            let five = BigUint::from(5u32).pow(u32::try_from(pow2).unwrap_or(0));
            (d.digits * c * five, d.exp - pow2)
        }
    };
    decimal_text(d.neg, &digits, exp)
        .ok_or_else(|| BuiltinError("units.parse: could not parse amount to a number".into()))
}

/// A binary float `mant × 2^exp`, rounded to a fixed number of bits like Go's `big.Float`.
#[derive(Clone)]
struct BinFloat {
    mant: BigUint,
    exp: i64,
}

impl BinFloat {
    fn from_int(v: BigUint, prec: u64) -> BinFloat {
        BinFloat { mant: v, exp: 0 }.rounded(prec, false)
    }

    /// Rounds to `prec` bits, nearest even; `sticky` says discarded lower bits were non-zero.
    fn rounded(self, prec: u64, sticky: bool) -> BinFloat {
        let bits = self.mant.bits();
        if bits <= prec {
            return self;
        }
        let shift = bits - prec;
        let mut q = &self.mant >> shift;
        let rem = &self.mant - (&q << shift);
        let half = BigUint::from(1u32) << (shift - 1);
        let odd = q.bit(0);
        if rem > half || (rem == half && (sticky || odd)) {
            q += 1u32;
        }
        let mut exp = self.exp + i64::try_from(shift).unwrap_or(i64::MAX);
        if q.bits() > prec {
            q >>= 1;
            exp += 1;
        }
        BinFloat { mant: q, exp }
    }

    fn mul(&self, other: &BinFloat, prec: u64) -> BinFloat {
        BinFloat {
            mant: &self.mant * &other.mant,
            exp: self.exp + other.exp,
        }
        .rounded(prec, false)
    }

    fn quo(&self, other: &BinFloat, prec: u64) -> BinFloat {
        if self.mant.is_zero() || other.mant.is_zero() {
            return BinFloat {
                mant: BigUint::zero(),
                exp: 0,
            };
        }
        let want = prec + 2 + other.mant.bits();
        let s = want.saturating_sub(self.mant.bits());
        let num = &self.mant << s;
        let q = &num / &other.mant;
        let r = &num - &q * &other.mant;
        BinFloat {
            mant: q,
            exp: self.exp - other.exp - i64::try_from(s).unwrap_or(0),
        }
        .rounded(prec, !r.is_zero())
    }

    /// Go's `Float.pow5`: exact up to 5^27, then square-and-multiply with 64 guard bits.
    fn pow5(n: u64, prec: u64) -> BinFloat {
        const TAB: u64 = 7_450_580_596_923_828_125; // 5^27
        if n <= 27 {
            return BinFloat::from_int(
                BigUint::from(5u32).pow(u32::try_from(n).unwrap_or(0)),
                prec,
            );
        }
        let mut z = BinFloat::from_int(BigUint::from(TAB), prec);
        let mut f = BinFloat::from_int(BigUint::from(5u32), prec + 64);
        let mut n = n - 27;
        while n > 0 {
            if n & 1 != 0 {
                z = z.mul(&f, prec);
            }
            f = f.mul(&f, prec + 64);
            n >>= 1;
        }
        z
    }

    /// Truncates toward zero.
    fn to_int(&self) -> BigUint {
        if self.exp >= 0 {
            &self.mant << u64::try_from(self.exp).unwrap_or(0)
        } else {
            &self.mant >> self.exp.unsigned_abs()
        }
    }
}

/// Go's `big.Float.SetString` at the default 64-bit precision. The digits are kept exact
/// until the single rounding multiplication or division by the power of five, as in Go.
fn parse_binary64(d: &Decimal) -> Option<BinFloat> {
    const PREC: u64 = 64;
    // 10^e = 2^e · 5^e: the power of two only moves the exponent.
    let z = BinFloat {
        mant: d.digits.clone(),
        exp: d.exp,
    };
    if z.mant.is_zero() || d.exp == 0 {
        return Some(z.rounded(PREC, false));
    }
    let n = d.exp.unsigned_abs();
    if n > 1_000_000 {
        return None;
    }
    let p = BinFloat::pow5(n, PREC + 64);
    Some(if d.exp < 0 {
        z.quo(&p, PREC)
    } else {
        z.mul(&p, PREC)
    })
}

pub(super) fn parse_bytes(args: &[Value], _: &Context) -> BuiltinResult {
    let total = parse_bytes_int(str_operand(args, 1)?)?;
    let v = match total.to_i64() {
        Some(i) => Value::int(i),
        None => Value::Number(Number::Big(total.to_string())),
    };
    ok(v)
}

fn parse_bytes_int(raw: &str) -> Result<BigInt, BuiltinError> {
    let s = raw.to_lowercase().replace('"', "");
    if s.contains(' ') {
        return fail("units.parse_bytes: spaces not allowed in resource strings");
    }
    let Ok((num, unit)) = split_amount(&s) else {
        return fail("units.parse_bytes: exponent too large");
    };
    if num.is_empty() {
        return fail("units.parse_bytes: no byte amount provided");
    }
    let factor: u64 = match unit {
        "" => 1,
        "kb" | "k" => 1000,
        "kib" | "ki" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" | "mi" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" | "gi" => 1 << 30,
        "tb" | "t" => 1_000_000_000_000,
        "tib" | "ti" => 1 << 40,
        "pb" | "p" => 1_000_000_000_000_000,
        "pib" | "pi" => 1 << 50,
        "eb" | "e" => 1_000_000_000_000_000_000,
        "eib" | "ei" => 1 << 60,
        _ => {
            return fail(format!(
                "units.parse_bytes: byte unit {unit} not recognized"
            ))
        }
    };
    let Some(f) = parse_decimal(num).and_then(|d| parse_binary64(&d).map(|f| (d.neg, f))) else {
        return fail("units.parse_bytes: could not parse byte amount to a number");
    };
    let (neg, value) = f;
    let product = value.mul(&BinFloat::from_int(BigUint::from(factor), 64), 64);
    let magnitude = product.to_int();
    Ok(BigInt::from_biguint(
        if neg && !magnitude.is_zero() {
            Sign::Minus
        } else {
            Sign::Plus
        },
        magnitude,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn run(f: fn(&[Value], &Context) -> BuiltinResult, s: &str) -> Result<String, String> {
        f(&[Value::str(s)], &Context { now_ns: 0 })
            .map(|v| v.unwrap().to_rego())
            .map_err(|e| e.0)
    }

    #[test]
    fn parse_like_opa() {
        for (input, want) in [
            ("1G", "1000000000"),
            ("500m", "0.5"),
            ("0.0005K", "0.5"),
            ("0.0000005M", "0.5"),
            ("1.1Ki", "1126.4"),
            ("10KI", "10240"),
            ("\"100TI\"", "109951162777600"),
            ("10Ei", "11529215046068469760"),
            ("-3.5E2m", "-0.35"),
            ("7.8E-1", "0.78"),
            ("1e-2", "0.01"),
            ("5e1Gi", "53687091200"),
            (".0", "0"),
            ("100m", "0.1"),
            ("1000m", "1"),
        ] {
            assert_eq!(run(parse, input).unwrap(), want, "{input}");
        }
        for (input, want) in [
            ("", "units.parse: no amount provided"),
            ("G", "units.parse: no amount provided"),
            (
                "100 k",
                "units.parse: spaces not allowed in resource strings",
            ),
            ("foo", "units.parse: no amount provided"),
            ("0.0.0", "units.parse: could not parse amount to a number"),
            ("10e10000000Ei", "units.parse: exponent too large"),
            ("5x", "units.parse: unit x not recognized"),
        ] {
            assert_eq!(run(parse, input).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn parse_bytes_like_opa() {
        for (input, want) in [
            ("1.1KiB", "1126"),
            ("1.1KB", "1100"),
            (".5KB", "500"),
            ("10e", "10000000000000000000"),
            ("10EIB", "11529215046068469760"),
            ("3.2E2MiB", "335544320"),
            ("1e-2KB", "10"),
            ("7.5e1TiB", "82463372083200"),
            ("\"100TIB\"", "109951162777600"),
            ("-5kb", "-5000"),
            ("0.0", "0"),
        ] {
            assert_eq!(run(parse_bytes, input).unwrap(), want, "{input}");
        }
        assert_eq!(
            run(parse_bytes, "GB").unwrap_err(),
            "units.parse_bytes: no byte amount provided"
        );
        assert_eq!(
            run(parse_bytes, "5xb").unwrap_err(),
            "units.parse_bytes: byte unit xb not recognized"
        );
        assert_eq!(
            run(parse_bytes, ".5.2").unwrap_err(),
            "units.parse_bytes: could not parse byte amount to a number"
        );
        assert_eq!(
            run(parse_bytes, "123456789012345678901234567890").unwrap(),
            "123456789012345678899921813504"
        );
        assert_eq!(
            run(parse_bytes, "9.999999999999999999e2kb").unwrap(),
            "999999"
        );
        assert_eq!(run(parse_bytes, "4.000000000000000001").unwrap(), "4");
    }

    /// Compares with JSON lines `[input, units.parse text, units.parse_bytes text]` from a Go
    /// program running OPA's code (errors start with "ERR"). Run with
    /// `ACGS_UNITS_CASES=<file> cargo test -- --ignored`.
    #[test]
    #[ignore = "needs a case file generated with Go"]
    fn matches_go_oracle() {
        let text = std::fs::read_to_string(std::env::var("ACGS_UNITS_CASES").unwrap()).unwrap();
        let mut failures = 0;
        for line in text.lines() {
            let c: Vec<String> = serde_json::from_str(line).unwrap();
            let got_units = parse_text(&c[0]).map_err(|_| ());
            let got_bytes = parse_bytes_int(&c[0])
                .map(|b| b.to_string())
                .map_err(|_| ());
            let want_units = if c[1].starts_with("ERR") {
                Err(())
            } else {
                Ok(c[1].clone())
            };
            let want_bytes = if c[2].starts_with("ERR") {
                Err(())
            } else {
                Ok(c[2].clone())
            };
            if got_units != want_units || got_bytes != want_bytes {
                failures += 1;
                if failures < 30 {
                    eprintln!(
                        "{:?}: want {:?} {:?}, got {got_units:?} {got_bytes:?}",
                        c[0], want_units, want_bytes
                    );
                }
            }
        }
        assert_eq!(failures, 0);
    }
}
