//! A small DER reader for the parts of X.509 that OPA's output exposes. Reading the
//! structures directly (rather than through a certificate library's model) keeps every raw
//! byte range and the order of repeated fields, which Go's `x509.Certificate` JSON shows.

/// One tag-length-value element. Only low tag numbers (< 31) occur in X.509.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const SET: u8 = 0x31;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const OID: u8 = 0x06;
pub(super) const BOOLEAN: u8 = 0x01;

#[derive(Debug, Clone, Copy)]
pub(super) struct Der<'a> {
    data: &'a [u8],
}

impl<'a> Der<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Der { data }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(super) fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub(super) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    pub(super) fn read(&mut self) -> Option<Tlv<'a>> {
        let tag = *self.data.first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let first = *self.data.get(1)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2usize)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for b in self.data.get(2..2 + n)? {
                len = len.checked_mul(256)?.checked_add(usize::from(*b))?;
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let raw = self.data.get(..end)?;
        let content = self.data.get(header..end)?;
        self.data = self.data.get(end..)?;
        Some(Tlv { tag, content, raw })
    }

    pub(super) fn read_tag(&mut self, tag: u8) -> Option<Tlv<'a>> {
        if self.peek_tag()? != tag {
            return None;
        }
        self.read()
    }

    /// Reads the next element if it carries `tag`; `Some(None)` when it does not.
    pub(super) fn optional(&mut self, tag: u8) -> Option<Option<Tlv<'a>>> {
        if self.peek_tag() == Some(tag) {
            self.read().map(Some)
        } else {
            Some(None)
        }
    }
}

/// The arcs of an OBJECT IDENTIFIER.
pub(super) fn oid_arcs(content: &[u8]) -> Option<Vec<u64>> {
    let mut values = Vec::new();
    let mut cur: u64 = 0;
    let mut in_value = false;
    for b in content {
        if !in_value && *b == 0x80 {
            return None;
        }
        cur = cur.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
        in_value = true;
        if b & 0x80 == 0 {
            values.push(cur);
            cur = 0;
            in_value = false;
        }
    }
    if in_value || values.is_empty() {
        return None;
    }
    let first = *values.first()?;
    let (a, b) = if first < 80 {
        (first / 40, first % 40)
    } else {
        (2, first - 80)
    };
    let mut arcs = vec![a, b];
    arcs.extend(values.get(1..)?);
    Some(arcs)
}

pub(super) fn oid_string(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// A DER INTEGER as i64 (two's complement, at most 8 bytes).
pub(super) fn int_i64(content: &[u8]) -> Option<i64> {
    if content.is_empty() || content.len() > 8 {
        return None;
    }
    let neg = content.first().is_some_and(|b| b & 0x80 != 0);
    let mut v: i64 = if neg { -1 } else { 0 };
    for b in content {
        v = (v << 8) | i64::from(*b);
    }
    Some(v)
}

/// A DER INTEGER in decimal, any size.
pub(super) fn int_decimal(content: &[u8]) -> String {
    let neg = content.first().is_some_and(|b| b & 0x80 != 0);
    if !neg {
        return rsa::BigUint::from_bytes_be(content).to_string();
    }
    // Magnitude of a negative two's complement number: invert and add one.
    let mut mag: Vec<u8> = content.iter().map(|b| !b).collect();
    for b in mag.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
    format!("-{}", rsa::BigUint::from_bytes_be(&mag))
}

/// A BIT STRING's bytes (the unused-bits count is dropped, as Go's `RightAlign` would keep
/// whole bytes for the signatures and keys read here).
pub(super) fn bit_string(content: &[u8]) -> Option<&[u8]> {
    let unused = *content.first()?;
    if unused > 7 {
        return None;
    }
    content.get(1..)
}

/// Seconds since the epoch for a UTCTime or GeneralizedTime in the `Z` forms DER allows.
pub(super) fn time(tlv: &Tlv<'_>) -> Option<i64> {
    let s = std::str::from_utf8(tlv.content).ok()?;
    let digits = s.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).and_then(|t| t.parse::<i64>().ok());
    let (year, rest) = match (tlv.tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let hour = num(rest + 4..rest + 6)?;
    let min = num(rest + 6..rest + 8)?;
    let sec = num(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 in UTC, as Go's `time.Time` marshals a whole-second instant.
pub(super) fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        r % 3600 / 60,
        r % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_oids_ints_and_times() {
        assert_eq!(
            oid_arcs(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]).unwrap(),
            vec![1, 2, 840, 113_549, 1, 1, 1]
        );
        assert_eq!(oid_arcs(&[0x55, 0x1d, 0x11]).unwrap(), vec![2, 5, 29, 17]);
        assert!(oid_arcs(&[0x86]).is_none());
        assert_eq!(int_i64(&[0xff]), Some(-1));
        assert_eq!(int_decimal(&[0x00, 0xff]), "255");
        assert_eq!(int_decimal(&[0xff, 0x00]), "-256");
        let t = Tlv {
            tag: 0x17,
            content: b"140529000000Z",
            raw: b"",
        };
        assert_eq!(rfc3339(time(&t).unwrap()), "2014-05-29T00:00:00Z");
        let g = Tlv {
            tag: 0x18,
            content: b"21221027165528Z",
            raw: b"",
        };
        assert_eq!(rfc3339(time(&g).unwrap()), "2122-10-27T16:55:28Z");
        assert!(time(&Tlv {
            tag: 0x17,
            content: b"140230000000Z",
            raw: b""
        })
        .is_none());
    }

    #[test]
    fn rejects_truncated_input() {
        let mut d = Der::new(&[0x30, 0x05, 0x01]);
        assert!(d.read().is_none());
        let mut d = Der::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.read().is_none());
    }
}
