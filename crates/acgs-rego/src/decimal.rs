//! Decimal numbers with the arithmetic OPA's Wasm runtime uses for Rego numbers: exact sums,
//! differences and products, quotients rounded to 18 significant digits (half up), `round` to
//! an integer half away from zero, and exact comparisons. Anything that would not fit the
//! fixed-width representation is `None`: the caller then falls back (the constitution's native
//! evaluator to the Wasm, the plan evaluator to exact literal comparison).

use std::cmp::Ordering;

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{Signed, Zero};

/// Coefficients stay below 10^36, so a coefficient times ten still fits an `i128`.
const MAX_COEF: i128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;
/// Exponents beyond this are left to the Wasm evaluator.
const MAX_EXP: i32 = 400;
/// Significant digits of a quotient (OPA's Wasm runtime divides in libmpdec's default
/// context: 18 digits on its 32-bit build, rounding half up).
const DIV_DIGITS: u32 = 18;

/// `coef * 10^exp`, normalised: no trailing zeros in `coef`, and zero is `0 * 10^0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    coef: i128,
    exp: i32,
}

#[inline]
fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

#[inline]
fn digits(mut x: i128) -> u32 {
    let mut n = 1;
    while x >= 10 {
        x /= 10;
        n += 1;
    }
    n
}

impl Dec {
    pub const ZERO: Dec = Dec { coef: 0, exp: 0 };
    pub const ONE: Dec = Dec { coef: 1, exp: 0 };

    #[inline]
    fn new(mut coef: i128, mut exp: i32) -> Option<Dec> {
        if coef == 0 {
            return Some(Dec::ZERO);
        }
        if let Ok(mut small) = i64::try_from(coef) {
            // 64-bit division is several times cheaper than 128-bit; most values are small.
            while small % 10 == 0 {
                small /= 10;
                exp = exp.checked_add(1)?;
            }
            coef = i128::from(small);
        }
        while coef % 10 == 0 {
            coef /= 10;
            exp = exp.checked_add(1)?;
        }
        (coef.abs() < MAX_COEF && exp.abs() <= MAX_EXP).then_some(Dec { coef, exp })
    }

    #[inline]
    pub fn int(i: i64) -> Dec {
        Dec::new(i128::from(i), 0).unwrap_or(Dec::ZERO)
    }

    /// A JSON number's literal text.
    #[inline]
    pub fn parse(text: &str) -> Option<Dec> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)?.parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut coef: i128 = 0;
        let mut exp = exponent.checked_sub(i32::try_from(frac.len()).ok()?)?;
        for b in int.bytes().chain(frac.bytes()) {
            if coef == 0 && b == b'0' {
                continue;
            }
            if coef >= MAX_COEF / 10 {
                // More digits than the representation holds: exact only if the rest are zeros.
                exp = exp.checked_add(1)?;
                if b != b'0' {
                    return None;
                }
                continue;
            }
            coef = coef * 10 + i128::from(b - b'0');
        }
        if coef == 0 {
            return Some(Dec::ZERO);
        }
        Dec::new(if neg { -coef } else { coef }, exp)
    }

    /// Both coefficients at the smaller exponent.
    #[inline]
    fn aligned(self, o: Dec) -> Option<(i128, i128, i32)> {
        let e = self.exp.min(o.exp);
        let a = self
            .coef
            .checked_mul(pow10(u32::try_from(self.exp - e).ok()?)?)?;
        let b = o.coef.checked_mul(pow10(u32::try_from(o.exp - e).ok()?)?)?;
        Some((a, b, e))
    }

    #[inline]
    pub fn plus(self, o: Dec) -> Option<Dec> {
        if o.coef == 0 {
            return Some(self);
        }
        if self.coef == 0 {
            return Some(o);
        }
        let (a, b, e) = self.aligned(o)?;
        Dec::new(a.checked_add(b)?, e)
    }

    #[inline]
    pub fn minus(self, o: Dec) -> Option<Dec> {
        self.plus(Dec {
            coef: -o.coef,
            exp: o.exp,
        })
    }

    #[inline]
    pub fn times(self, o: Dec) -> Option<Dec> {
        Dec::new(self.coef.checked_mul(o.coef)?, self.exp.checked_add(o.exp)?)
    }

    #[inline]
    pub fn compare(self, o: Dec) -> Option<Ordering> {
        let (sa, sb) = (self.coef.signum(), o.coef.signum());
        if sa != sb {
            return Some(sa.cmp(&sb));
        }
        let (a, b, _) = self.aligned(o)?;
        Some(a.cmp(&b))
    }

    #[inline]
    pub fn lt(self, o: Dec) -> Option<bool> {
        Some(self.compare(o)? == Ordering::Less)
    }

    #[inline]
    pub fn gt(self, o: Dec) -> Option<bool> {
        Some(self.compare(o)? == Ordering::Greater)
    }

    /// Rego's `min([a, b])` and `max([a, b])` by value.
    #[inline]
    pub fn min(self, o: Dec) -> Option<Dec> {
        Some(if o.lt(self)? { o } else { self })
    }

    #[inline]
    pub fn max(self, o: Dec) -> Option<Dec> {
        Some(if o.gt(self)? { o } else { self })
    }

    /// `self / o` to 18 significant digits, half up; `None` for division by zero.
    #[inline]
    pub fn quotient(self, o: Dec) -> Option<Dec> {
        if o.coef == 0 {
            return None;
        }
        if self.coef == 0 {
            return Some(Dec::ZERO);
        }
        let neg = (self.coef < 0) != (o.coef < 0);
        let (a, b) = (self.coef.abs(), o.coef.abs());
        let mut exp = self.exp.checked_sub(o.exp)?;
        let mut q = a / b;
        let mut r = a % b;
        // Long division: one more digit than kept, then the remainder says whether any
        // further digit is non-zero.
        while (q == 0 || digits(q) <= DIV_DIGITS) && r != 0 {
            let next = r.checked_mul(10)?;
            q = q.checked_mul(10)?.checked_add(next / b)?;
            r = next % b;
            exp = exp.checked_sub(1)?;
        }
        let extra = if q == 0 {
            0
        } else {
            digits(q).saturating_sub(DIV_DIGITS)
        };
        if extra > 0 {
            let unit = pow10(extra)?;
            let (kept, dropped) = (q / unit, q % unit);
            // Half up: a dropped part of at least half the unit rounds away from zero.
            q = if dropped.checked_mul(2)? >= unit {
                kept + 1
            } else {
                kept
            };
            exp = exp.checked_add(i32::try_from(extra).ok()?)?;
        }
        Dec::new(if neg { -q } else { q }, exp)
    }

    /// The exact order of two JSON number literals of any length and spelling, where `Dec`'s
    /// fixed range would not do (see [`compare_literals`]).
    pub fn compare_literals(a: &str, b: &str) -> Option<Ordering> {
        compare_literals(a, b)
    }

    /// Rego's `round`: to an integer, half away from zero.
    #[inline]
    pub fn round(self) -> Option<Dec> {
        if self.exp >= 0 {
            return Some(self);
        }
        let unit = pow10(u32::try_from(-self.exp).ok()?)?;
        let (kept, dropped) = (self.coef / unit, self.coef % unit);
        let away = dropped.abs().checked_mul(2)? >= unit;
        let q = match (away, self.coef < 0) {
            (true, false) => kept + 1,
            (true, true) => kept - 1,
            _ => kept,
        };
        Dec::new(q, 0)
    }

    /// `coef * 10^exp`, when it is in range (normalised on the way in).
    #[inline]
    pub fn from_parts(coef: i128, exp: i32) -> Option<Dec> {
        Dec::new(coef, exp)
    }

    /// The normalised coefficient and exponent.
    #[inline]
    pub fn parts(self) -> (i128, i32) {
        (self.coef, self.exp)
    }

    /// Whether the value is an integer.
    #[inline]
    pub fn is_integer(self) -> bool {
        self.exp >= 0
    }

    /// JSON text for the value: plain decimal notation while it stays short, else
    /// `<coefficient>e<exponent>`. Equal values give equal text.
    pub fn to_text(self) -> String {
        let digits = self.coef.unsigned_abs().to_string();
        let sign = if self.coef < 0 { "-" } else { "" };
        let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
        if self.exp >= 0 && len.saturating_add(self.exp) <= 21 {
            let zeros = "0".repeat(usize::try_from(self.exp).unwrap_or(0));
            return format!("{sign}{digits}{zeros}");
        }
        if self.exp < 0 && self.exp >= -(len + 6) {
            return point_text(sign, &digits, i64::from(self.exp));
        }
        format!("{sign}{digits}e{}", self.exp)
    }

    /// The integer value, when this is an integer that fits.
    #[inline]
    pub fn as_i64(self) -> Option<i64> {
        if self.exp < 0 {
            return None;
        }
        i64::try_from(
            self.coef
                .checked_mul(pow10(u32::try_from(self.exp).ok()?)?)?,
        )
        .ok()
    }

    /// `n / 10^places` as OPA's Wasm runtime writes the quotient of an integer by a power of
    /// ten: an integer when it is one, else plain decimal notation without trailing zeros.
    #[inline]
    pub fn scaled_text(n: i64, places: u32) -> Option<String> {
        let unit = 10i64.checked_pow(places)?;
        let (int, frac) = (n / unit, (n % unit).unsigned_abs());
        if frac == 0 {
            // OPA's runtime keeps integers that fit 32 bits as integers.
            i32::try_from(int).ok()?;
            return Some(int.to_string());
        }
        let mut out = String::with_capacity(24);
        if n < 0 {
            out.push('-');
        }
        out.push_str(&int.unsigned_abs().to_string());
        out.push('.');
        // The fraction's digits, most significant first, without trailing zeros.
        let mut digits = [b'0'; 20];
        let mut f = frac;
        let width = places as usize;
        for d in digits.iter_mut().take(width).rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let used = digits.get(..width)?;
        let end = used.iter().rposition(|&d| d != b'0')? + 1;
        out.push_str(std::str::from_utf8(used.get(..end)?).ok()?);
        Some(out)
    }
}

/// `sign` and the coefficient's `digits` times `10^exp` (`exp < 0`) in plain notation, with a
/// point and, for a value under one, leading zeros: `("-", "125", -2)` is `-1.25`.
pub fn point_text(sign: &str, digits: &str, exp: i64) -> String {
    let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let point = len.saturating_add(exp);
    if point > 0 {
        let (int, frac) = digits.split_at(usize::try_from(point).unwrap_or(0).min(digits.len()));
        format!("{sign}{int}.{frac}")
    } else {
        let zeros = "0".repeat(usize::try_from(point.unsigned_abs()).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    }
}

/// A decimal of any size: `coef * 10^exp` with no trailing zeros in `coef` (zero is `0 * 10^0`).
/// The exact arithmetic of OPA's Wasm runtime (libmpdec at its maximum precision) where [`Dec`]
/// has no room: sums, differences and products exact, quotients to 18 significant digits (half
/// up), `round` half away from zero. Aligning exponents further apart than [`MAX_ALIGN`] digits
/// is refused (`None`), so a hostile `1e999999999` cannot exhaust memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigDec {
    coef: BigInt,
    exp: i64,
}

/// Digits an operation may add to align two exponents.
pub const MAX_ALIGN: i64 = 10_000;

fn big_pow10(n: i64) -> Option<BigInt> {
    let n = u32::try_from(n).ok()?;
    Some(BigInt::from(10u8).pow(n))
}

fn big_digits(x: &BigInt) -> i64 {
    if x.is_zero() {
        return 1;
    }
    i64::try_from(x.magnitude().to_str_radix(10).len()).unwrap_or(i64::MAX)
}

impl BigDec {
    fn new(coef: BigInt, exp: i64) -> BigDec {
        if coef.is_zero() {
            return BigDec { coef, exp: 0 };
        }
        let text = coef.magnitude().to_str_radix(10);
        let trimmed = text.trim_end_matches('0');
        let zeros = text.len() - trimmed.len();
        if zeros == 0 {
            return BigDec { coef, exp };
        }
        let mag = BigInt::parse_bytes(trimmed.as_bytes(), 10).unwrap_or_default();
        let coef = if coef.sign() == Sign::Minus {
            -mag
        } else {
            mag
        };
        BigDec {
            coef,
            exp: exp.saturating_add(i64::try_from(zeros).unwrap_or(0)),
        }
    }

    /// A JSON number literal's text, exactly.
    pub fn parse(text: &str) -> Option<BigDec> {
        let lit = Literal::parse(text)?;
        if lit.is_zero() {
            return Some(BigDec::new(BigInt::zero(), 0));
        }
        let digits: Vec<u8> = lit.digits().copied().collect();
        let mag = BigInt::parse_bytes(&digits, 10)?;
        let n = i64::try_from(digits.len()).ok()?;
        // lit's value is 0.DIGITS * 10^exp.
        let exp = lit.exp.checked_sub(n)?;
        Some(BigDec::new(if lit.neg { -mag } else { mag }, exp))
    }

    pub fn from_dec(d: Dec) -> BigDec {
        BigDec::new(BigInt::from(d.coef), i64::from(d.exp))
    }

    /// The same value as a [`Dec`], when it fits one.
    pub fn to_dec(&self) -> Option<Dec> {
        let coef = i128::try_from(&self.coef).ok()?;
        Dec::new(coef, i32::try_from(self.exp).ok()?)
    }

    fn aligned(&self, o: &BigDec) -> Option<(BigInt, BigInt, i64)> {
        let e = self.exp.min(o.exp);
        let (da, db) = (self.exp.checked_sub(e)?, o.exp.checked_sub(e)?);
        if da > MAX_ALIGN || db > MAX_ALIGN {
            return None;
        }
        Some((&self.coef * big_pow10(da)?, &o.coef * big_pow10(db)?, e))
    }

    pub fn plus(&self, o: &BigDec) -> Option<BigDec> {
        if o.coef.is_zero() {
            return Some(self.clone());
        }
        if self.coef.is_zero() {
            return Some(o.clone());
        }
        let (a, b, e) = self.aligned(o)?;
        Some(BigDec::new(a + b, e))
    }

    pub fn minus(&self, o: &BigDec) -> Option<BigDec> {
        self.plus(&BigDec {
            coef: -o.coef.clone(),
            exp: o.exp,
        })
    }

    pub fn times(&self, o: &BigDec) -> Option<BigDec> {
        Some(BigDec::new(
            &self.coef * &o.coef,
            self.exp.checked_add(o.exp)?,
        ))
    }

    /// `self / o` to 18 significant digits, half up; `None` for division by zero.
    pub fn quotient(&self, o: &BigDec) -> Option<BigDec> {
        if o.coef.is_zero() {
            return None;
        }
        if self.coef.is_zero() {
            return Some(BigDec::new(BigInt::zero(), 0));
        }
        let neg = (self.coef.sign() == Sign::Minus) != (o.coef.sign() == Sign::Minus);
        let (a, b) = (self.coef.abs(), o.coef.abs());
        // Scale the dividend so the quotient has at least one digit more than kept.
        let shift = (i64::from(DIV_DIGITS) + 1 + big_digits(&b) - big_digits(&a)).max(0);
        if shift > MAX_ALIGN {
            return None;
        }
        let q = (a * big_pow10(shift)?) / b;
        let mut exp = self.exp.checked_sub(o.exp)?.checked_sub(shift)?;
        let extra = big_digits(&q) - i64::from(DIV_DIGITS);
        let q = if extra > 0 {
            let unit = big_pow10(extra)?;
            let (kept, dropped) = q.div_rem(&unit);
            exp = exp.checked_add(extra)?;
            if dropped * 2 >= unit {
                kept + 1
            } else {
                kept
            }
        } else {
            q
        };
        Some(BigDec::new(if neg { -q } else { q }, exp))
    }

    /// To an integer, half away from zero.
    pub fn round(&self) -> Option<BigDec> {
        if self.exp >= 0 {
            return Some(self.clone());
        }
        if -self.exp > big_digits(&self.coef) + 1 {
            return Some(BigDec::new(BigInt::zero(), 0));
        }
        let unit = big_pow10(-self.exp)?;
        let (kept, dropped) = self.coef.div_rem(&unit);
        let away = dropped.abs() * 2 >= unit;
        let q = match (away, self.coef.sign() == Sign::Minus) {
            (true, false) => kept + 1,
            (true, true) => kept - 1,
            _ => kept,
        };
        Some(BigDec::new(q, 0))
    }

    pub fn is_integer(&self) -> bool {
        self.exp >= 0
    }

    pub fn compare(&self, o: &BigDec) -> Ordering {
        let (sa, sb) = (self.coef.sign(), o.coef.sign());
        if sa != sb {
            return sa.cmp(&sb);
        }
        if sa == Sign::NoSign {
            return Ordering::Equal;
        }
        // Same sign: the adjusted exponent (of the leading digit) decides, then the digits.
        let adj_a = self.exp.saturating_add(big_digits(&self.coef));
        let adj_b = o.exp.saturating_add(big_digits(&o.coef));
        let mag = adj_a.cmp(&adj_b).then_with(|| {
            let a = self.coef.magnitude().to_str_radix(10);
            let b = o.coef.magnitude().to_str_radix(10);
            a.cmp(&b)
        });
        if sa == Sign::Minus {
            mag.reverse()
        } else {
            mag
        }
    }

    /// JSON text, as [`Dec::to_text`] writes it.
    pub fn to_text(&self) -> String {
        let digits = self.coef.magnitude().to_str_radix(10);
        let sign = if self.coef.sign() == Sign::Minus {
            "-"
        } else {
            ""
        };
        let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
        if self.exp >= 0 && len.saturating_add(self.exp) <= 21 {
            let zeros = "0".repeat(usize::try_from(self.exp).unwrap_or(0));
            return format!("{sign}{digits}{zeros}");
        }
        if self.exp < 0 && self.exp >= -(len + 6) {
            return point_text(sign, &digits, self.exp);
        }
        format!("{sign}{digits}e{}", self.exp)
    }
}

/// A JSON number literal read for exact comparison, with no bound on its digits: the value is
/// `0.DIGITS * 10^exp` with the significant digits (no leading or trailing zeros) taken from
/// `int` and `frac` without copying them.
struct Literal<'a> {
    neg: bool,
    int: &'a [u8],
    frac: &'a [u8],
    /// Index of the first significant digit in `int ++ frac`, and one past the last.
    first: usize,
    end: usize,
    exp: i64,
}

impl<'a> Literal<'a> {
    fn parse(text: &'a str) -> Option<Literal<'a>> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (rest.get(..i)?, Some(rest.get(i + 1..)?)),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((_, "")) => return None,
            Some(parts) => parts,
            None => (mantissa, ""),
        };
        let (int, frac) = (int.as_bytes(), frac.as_bytes());
        if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
            return None;
        }
        let e = match exponent {
            None => 0,
            Some(t) => {
                let (sign, digits) = match t.as_bytes().first() {
                    Some(b'-') => (-1, t.get(1..)?),
                    Some(b'+') => (1, t.get(1..)?),
                    _ => (1, t),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let digits = digits.trim_start_matches('0');
                // An exponent past 18 digits is not compared (the fast path then declines).
                if digits.len() > 18 {
                    return None;
                }
                sign * digits.parse::<i64>().unwrap_or(0)
            }
        };
        let len = int.len() + frac.len();
        let first = int
            .iter()
            .chain(frac)
            .position(|&b| b != b'0')
            .unwrap_or(len);
        let last = frac
            .iter()
            .rposition(|&b| b != b'0')
            .map(|i| int.len() + i)
            .or_else(|| int.iter().rposition(|&b| b != b'0'));
        let end = last.map_or(first, |i| i + 1);
        let exp = i64::try_from(int.len())
            .ok()?
            .checked_sub(i64::try_from(first).ok()?)?
            .checked_add(e)?;
        Some(Literal {
            neg,
            int,
            frac,
            first,
            end,
            exp,
        })
    }

    fn is_zero(&self) -> bool {
        self.first == self.end
    }

    fn digits(&self) -> impl Iterator<Item = &u8> + '_ {
        self.int
            .iter()
            .chain(self.frac)
            .skip(self.first)
            .take(self.end - self.first)
    }

    fn signum(&self) -> i8 {
        match (self.is_zero(), self.neg) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }
}

/// The exact order of two JSON number literals, whatever their length or spelling (`10`,
/// `10.0`, `1e1` and `0.1E+2` are equal; `10.000000000000000001` is greater), as OPA orders
/// them (big.Rat in Go, libmpdec at its maximum precision in the Wasm runtime). `None` when a
/// literal is not a JSON number or its exponent has more than 18 digits.
fn compare_literals(a: &str, b: &str) -> Option<Ordering> {
    if a == b {
        return Literal::parse(a).map(|_| Ordering::Equal);
    }
    let (x, y) = (Literal::parse(a)?, Literal::parse(b)?);
    let (sx, sy) = (x.signum(), y.signum());
    if sx != sy || sx == 0 {
        return Some(sx.cmp(&sy));
    }
    // Same sign, both non-zero: the larger exponent has the larger magnitude, then the digits
    // decide (a prefix is the smaller: the longer one's extra digits are not all zeros).
    let magnitude = x.exp.cmp(&y.exp).then_with(|| x.digits().cmp(y.digits()));
    Some(if sx < 0 {
        magnitude.reverse()
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn parses_json_literals_by_value() {
        assert_eq!(d("1.50"), d("1.5"));
        assert_eq!(d("5E-1"), d("0.5"));
        assert_eq!(d("-0"), Dec::ZERO);
        assert_eq!(d("1e2"), Dec::int(100));
        assert_eq!(d("100000000000000000000000000000000000000000"), d("1e41"));
        assert!(Dec::parse("1e999999").is_none());
        assert!(Dec::parse("1.000000000000000000000000000000000000001").is_none());
        assert!(Dec::parse("abc").is_none());
    }

    #[test]
    fn divides_like_opas_wasm_runtime() {
        // Figures read from OPA-compiled Wasm: 2/3, 1/7, and a tie in the 19th digit.
        let q = d("2").quotient(d("3")).unwrap();
        assert_eq!(q, d("0.666666666666666667"));
        assert_eq!(d("1").quotient(d("7")).unwrap(), d("0.142857142857142857"));
        let tie = d("1234567890123456785")
            .quotient(d("10000000000000000000"))
            .unwrap();
        assert_eq!(tie, d("0.123456789012345679"));
        let big = d("123456789012345678901").quotient(Dec::ONE).unwrap();
        assert_eq!(big, d("1.23456789012345679e20"));
        assert_eq!(d("960").quotient(d("10000")).unwrap(), d("0.096"));
        assert!(Dec::ONE.quotient(Dec::ZERO).is_none());
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(d("2.5").round(), Some(Dec::int(3)));
        assert_eq!(d("0.5").round(), Some(Dec::ONE));
        assert_eq!(d("-2.5").round(), Some(Dec::int(-3)));
        assert_eq!(d("2.4999").round(), Some(Dec::int(2)));
    }

    #[test]
    fn compares_exactly() {
        assert_eq!(d("0.30000000000000001").gt(d("0.3")), Some(true));
        assert_eq!(d("1e400").lt(d("2e400")), Some(true));
        assert_eq!(d("-1").lt(d("0")), Some(true));
        assert_eq!(d("0.1").plus(d("0.2")), Some(d("0.3")));
    }

    #[test]
    fn writes_text_that_parses_back() {
        for (v, text) in [
            ("0", "0"),
            ("-12.50", "-12.5"),
            ("1e3", "1000"),
            ("0.001", "0.001"),
            ("1e-9", "1e-9"),
            ("1.5e-6", "0.0000015"),
            ("1e30", "1e30"),
            ("-1.5e-30", "-15e-31"),
        ] {
            assert_eq!(d(v).to_text(), text, "{v}");
            assert_eq!(d(&d(v).to_text()), d(v), "{v}");
        }
    }

    #[test]
    fn big_decimals_are_exact() {
        let b = |t: &str| BigDec::parse(t).unwrap();
        let x = b("0.065229996060497810000000000000000000001");
        assert_eq!(x.plus(&b("0")).unwrap(), x);
        assert_eq!(
            x.times(&b("10")).unwrap(),
            b("0.65229996060497810000000000000000000001")
        );
        assert_eq!(b("2").quotient(&b("3")).unwrap(), b("0.666666666666666667"));
        assert_eq!(
            b("123456789012345678901").quotient(&b("1")).unwrap(),
            b("1.23456789012345679e20")
        );
        assert_eq!(b("-2.5").round().unwrap(), b("-3"));
        assert_eq!(b("1e-400").round().unwrap(), b("0"));
        assert_eq!(b("1e400").compare(&b("2e399")), Ordering::Greater);
        assert_eq!(b("-1e400").compare(&b("-2e399")), Ordering::Less);
        assert_eq!(b("1e99999").plus(&b("1")), None);
        assert_eq!(b("1.50").to_text(), "1.5");
        assert_eq!(BigDec::from_dec(d("2.5")).to_dec(), Some(d("2.5")));
        for (x, y) in [
            ("1", "7"),
            ("960", "10000"),
            ("1234567890123456785", "10000000000000000000"),
        ] {
            assert_eq!(
                b(x).quotient(&b(y)).unwrap().to_dec(),
                d(x).quotient(d(y)),
                "{x}/{y}"
            );
        }
    }

    #[test]
    fn writes_scores_as_the_runtime_does() {
        assert_eq!(Dec::scaled_text(9600, 4).as_deref(), Some("0.96"));
        assert_eq!(Dec::scaled_text(10000, 4).as_deref(), Some("1"));
        assert_eq!(Dec::scaled_text(0, 4).as_deref(), Some("0"));
        assert_eq!(Dec::scaled_text(5, 4).as_deref(), Some("0.0005"));
        assert_eq!(Dec::scaled_text(12345, 4).as_deref(), Some("1.2345"));
    }
    #[test]
    fn compares_literals_exactly_in_any_spelling() {
        use Ordering::{Equal, Greater, Less};
        for (a, b, want) in [
            ("10", "10.0", Equal),
            ("10", "1e1", Equal),
            ("10", "1E+1", Equal),
            ("10", "0.1e2", Equal),
            ("10", "100e-1", Equal),
            ("10", "10.000000000000000001", Less),
            ("10", "9.999999999999999999", Greater),
            (
                "10",
                "10.00000000000000000000000000000000000000000000000001",
                Less,
            ),
            ("0", "-0", Equal),
            ("0", "0.0e5", Equal),
            ("-0.0", "0E-7", Equal),
            (
                "0.8",
                "0.79999999999999999999999999999999999999999999",
                Greater,
            ),
            ("0.8", "8e-1", Equal),
            ("0.8", "0.80000000000000004", Less),
            ("-1", "1", Less),
            ("-2", "-1", Less),
            ("-1e400", "-1e399", Less),
            ("1e400", "1e399", Greater),
            ("1e-400", "0", Greater),
            ("-1e-400", "0", Less),
            (
                "123456789012345678901234567890",
                "1.2345678901234567890123456789e29",
                Equal,
            ),
            ("2", "1.99999999999999999999", Greater),
            ("100", "100.0000000000000000000000001", Less),
            ("0.000123", "1.23e-4", Equal),
        ] {
            assert_eq!(compare_literals(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare_literals(b, a), Some(want.reverse()), "{b} vs {a}");
        }
        assert_eq!(compare_literals("1e9999999999999999999", "1"), None);
        assert_eq!(
            compare_literals("1e000000000000000000000001", "10"),
            Some(Equal)
        );
        assert_eq!(compare_literals("abc", "1"), None);
        assert_eq!(compare_literals("1", "1."), None);
        assert_eq!(compare_literals("--1", "1"), None);
        assert_eq!(compare_literals("1e", "1"), None);
        assert_eq!(compare_literals("1e+", "1"), None);
        // Agrees with Dec wherever Dec can represent both.
        let samples = [
            "0", "1", "-1", "0.5", "2.50", "1e2", "99.99", "-0.001", "12345e-3",
        ];
        for a in samples {
            for b in samples {
                assert_eq!(compare_literals(a, b), d(a).compare(d(b)), "{a} vs {b}");
            }
        }
    }
}
