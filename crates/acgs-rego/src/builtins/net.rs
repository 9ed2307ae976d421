//! Host builtins: net.cidr_*, net.lookup_ip_addr, http.send, providers.aws.sign_req, opa.runtime, internal.print, trace.
//!
//! OPA's CIDR builtins sit on Go's `net` package, whose IPv4-in-IPv6 handling leaks into
//! results (a `::ffff:a.b.c.d/n` network behaves as an IPv4 one, bare IPv4 addresses in
//! `net.cidr_merge` get classful masks). The helpers below model Go's 4- and 16-byte IP
//! representations so that those results come out the same.

use std::collections::{BTreeMap, BTreeSet};

use super::{BuiltinError, BuiltinFn, BuiltinResult, Context};
use crate::value::{Number, Value};

mod aws;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    let f: BuiltinFn = match name {
        "net.cidr_contains_matches" => cidr_contains_matches,
        "net.cidr_expand" => cidr_expand,
        "net.cidr_is_valid" => cidr_is_valid,
        "net.cidr_merge" => cidr_merge,
        "net.lookup_ip_addr" => lookup_ip_addr,
        "internal.print" | "print" => print,
        "trace" => trace,
        "opa.runtime" => opa_runtime,
        "http.send" => http_send,
        "providers.aws.sign_req" => aws::sign_req,
        _ => return None,
    };
    Some(f)
}

fn err(msg: impl Into<String>) -> BuiltinError {
    BuiltinError(msg.into())
}

fn operand(args: &[Value], pos: usize) -> Result<&Value, BuiltinError> {
    args.get(pos.saturating_sub(1))
        .ok_or_else(|| err(format!("operand {pos} missing")))
}

fn type_err(pos: usize, got: &Value, want: &str) -> BuiltinError {
    err(format!(
        "operand {pos} must be {want} but got {}",
        got.type_name()
    ))
}

fn str_arg(args: &[Value], pos: usize) -> Result<&str, BuiltinError> {
    let v = operand(args, pos)?;
    v.as_str().ok_or_else(|| type_err(pos, v, "string"))
}

const V4_IN_V6: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Go's `net.ParseIP`: always the 16-byte form.
fn parse_ip(s: &str) -> Option<[u8; 16]> {
    if let Ok(v4) = s.parse::<std::net::Ipv4Addr>() {
        return Some(v4.to_ipv6_mapped().octets());
    }
    s.parse::<std::net::Ipv6Addr>().ok().map(|v6| v6.octets())
}

/// Go's `IP.To4`.
fn to4(ip: &[u8]) -> Option<&[u8]> {
    match ip.len() {
        4 => Some(ip),
        16 if ip.get(..12) == Some(&V4_IN_V6[..]) => ip.get(12..),
        _ => None,
    }
}

/// Go's `CIDRMask(ones, bits)`.
fn cidr_mask(ones: usize, bits: usize) -> Vec<u8> {
    (0..bits / 8)
        .map(|i| {
            let start = i * 8;
            if ones >= start + 8 {
                0xff
            } else if ones <= start {
                0
            } else {
                0xffu8 << (8 - (ones - start))
            }
        })
        .collect()
}

/// Go's `IP.Mask`.
fn mask_ip(ip: &[u8], mask: &[u8]) -> Option<Vec<u8>> {
    let mut ip = ip;
    let mut mask = mask;
    if mask.len() == 16
        && ip.len() == 4
        && mask.get(..12).is_some_and(|m| m.iter().all(|b| *b == 0xff))
    {
        mask = mask.get(12..)?;
    }
    if mask.len() == 4 && ip.len() == 16 && ip.get(..12) == Some(&V4_IN_V6[..]) {
        ip = ip.get(12..)?;
    }
    if ip.len() != mask.len() {
        return None;
    }
    Some(ip.iter().zip(mask).map(|(a, m)| a & m).collect())
}

/// Go's `IP.Equal`.
fn ip_equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() == b.len() {
        return a == b;
    }
    match (to4(a), to4(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[derive(Debug, Clone)]
struct IpNet {
    ip: Vec<u8>,
    mask: Vec<u8>,
}

impl IpNet {
    /// Go's `networkNumberAndMask`.
    fn number_and_mask(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let ip = match to4(&self.ip) {
            Some(v4) => v4.to_vec(),
            None if self.ip.len() == 16 => self.ip.clone(),
            None => return None,
        };
        let mask = match self.mask.len() {
            4 if ip.len() != 4 => return None,
            4 => self.mask.clone(),
            16 if ip.len() == 4 => self.mask.get(12..)?.to_vec(),
            16 => self.mask.clone(),
            _ => return None,
        };
        Some((ip, mask))
    }

    /// Go's `IPNet.Contains`.
    fn contains(&self, ip: &[u8]) -> bool {
        let Some((nn, m)) = self.number_and_mask() else {
            return false;
        };
        let ip = to4(ip).unwrap_or(ip);
        ip.len() == nn.len() && nn.iter().zip(&m).zip(ip).all(|((n, m), i)| n & m == i & m)
    }

    /// Go's `IPMask.Size`: `None` for a non-canonical mask.
    fn mask_size(&self) -> Option<(usize, usize)> {
        mask_ones(&self.mask).map(|ones| (ones, self.mask.len() * 8))
    }

    fn is_plain_ipv6(&self) -> bool {
        self.ip.len() == 16 && self.mask.len() == 16 && to4(&self.ip).is_none()
    }

    /// Go's `IPNet.String`.
    fn to_go_string(&self) -> String {
        let Some((nn, m)) = self.number_and_mask() else {
            return "<nil>".into();
        };
        match mask_ones(&m) {
            Some(ones) => format!("{}/{ones}", ip_string(&nn)),
            None => format!("{}/{}", ip_string(&nn), hex::encode(&m)),
        }
    }
}

fn mask_ones(mask: &[u8]) -> Option<usize> {
    let mut ones = 0usize;
    let mut seen_zero = false;
    for b in mask {
        for bit in (0..8).rev() {
            if b >> bit & 1 == 1 {
                if seen_zero {
                    return None;
                }
                ones += 1;
            } else {
                seen_zero = true;
            }
        }
    }
    Some(ones)
}

/// Go's `IP.String`: IPv4 (including IPv4-mapped) in dotted form, IPv6 per RFC 5952.
fn ip_string(ip: &[u8]) -> String {
    if let Some(v4) = to4(ip) {
        return v4.iter().map(u8::to_string).collect::<Vec<_>>().join(".");
    }
    match <[u8; 16]>::try_from(ip) {
        Ok(b) => std::net::Ipv6Addr::from(b).to_string(),
        Err(_) => format!("?{}", hex::encode(ip)),
    }
}

/// Go's `net.ParseCIDR`: the address as written (16 bytes) and its network.
fn parse_cidr(s: &str) -> Result<([u8; 16], IpNet), BuiltinError> {
    let bad = || err(format!("invalid CIDR address: {s}"));
    let (addr, bits_text) = s.split_once('/').ok_or_else(bad)?;
    let (ip, bits) = if let Ok(v4) = addr.parse::<std::net::Ipv4Addr>() {
        (v4.to_ipv6_mapped().octets(), 32usize)
    } else if let Ok(v6) = addr.parse::<std::net::Ipv6Addr>() {
        (v6.octets(), 128usize)
    } else {
        return Err(bad());
    };
    if bits_text.is_empty() || !bits_text.bytes().all(|b| b.is_ascii_digit()) || bits_text.len() > 8
    {
        return Err(bad());
    }
    let ones: usize = bits_text.parse().map_err(|_| bad())?;
    if ones > bits {
        return Err(bad());
    }
    let mask = cidr_mask(ones, bits);
    let net_ip = mask_ip(&ip, &mask).ok_or_else(bad)?;
    Ok((ip, IpNet { ip: net_ip, mask }))
}

/// The last address of a network, at the width of its mask (`getLastIP`).
fn last_ip(n: &IpNet) -> Result<Vec<u8>, BuiltinError> {
    let (ones, bits) = n
        .mask_size()
        .ok_or_else(|| err("CIDR mask is in non-standard format"))?;
    if ones == bits {
        return Ok(n.ip.clone());
    }
    // OR the host bits into the address, right-aligned as big.Int arithmetic would.
    let width = bits / 8;
    let mut out = vec![0u8; width];
    let src =
        n.ip.get(n.ip.len().saturating_sub(width)..)
            .unwrap_or_default();
    let offset = width.saturating_sub(src.len());
    for (i, b) in src.iter().enumerate() {
        if let Some(slot) = out.get_mut(offset + i) {
            *slot = *b;
        }
    }
    let host = bits - ones;
    for bit in 0..host {
        let byte = width - 1 - bit / 8;
        if let Some(slot) = out.get_mut(byte) {
            *slot |= 1 << (bit % 8);
        }
    }
    Ok(out)
}

/// `net.cidr_contains` as OPA implements it; `net.cidr_contains_matches` is built on it.
fn cidr_contains(a: &Value, b: &Value) -> Result<bool, BuiltinError> {
    let a_text = a.as_str().ok_or_else(|| type_err(1, a, "string"))?;
    let (_, net_a) = parse_cidr(a_text)?;
    let b_text = b.as_str().ok_or_else(|| type_err(1, b, "string"))?;
    if let Some(ip) = parse_ip(b_text) {
        return Ok(net_a.contains(&ip));
    }
    let (_, net_b) = parse_cidr(b_text).map_err(|_| {
        err(format!(
            "not a valid textual representation of an IP address or CIDR: {b_text}"
        ))
    })?;
    if net_a.is_plain_ipv6() && net_b.is_plain_ipv6() {
        let (a_ones, _) = net_a.mask_size().unwrap_or((0, 0));
        let (b_ones, _) = net_b.mask_size().unwrap_or((0, 0));
        let masked = mask_ip(&net_b.ip, &net_a.mask);
        return Ok(a_ones <= b_ones && masked.is_some_and(|m| ip_equal(&net_a.ip, &m)));
    }
    if !net_a.contains(&net_b.ip) {
        return Ok(false);
    }
    Ok(net_a.contains(&last_ip(&net_b)?))
}

/// The (cidr, index) pairs of one `cidr_contains_matches` operand.
fn match_operand(pos: usize, v: &Value) -> Result<Vec<(Value, Value)>, BuiltinError> {
    fn cidr_of(pos: usize, v: &Value) -> Result<Value, BuiltinError> {
        match v {
            Value::String(_) => Ok(v.clone()),
            Value::Array(items) => items.first().cloned().ok_or_else(|| {
                err(format!(
                    "operand {pos}: element must be string or non-empty array"
                ))
            }),
            _ => Err(err(format!(
                "operand {pos}: element must be string or non-empty array"
            ))),
        }
    }
    Ok(match v {
        Value::String(_) => vec![(v.clone(), v.clone())],
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let idx = i64::try_from(i).unwrap_or(i64::MAX);
                out.push((cidr_of(pos, item)?, Value::int(idx)));
            }
            out
        }
        Value::Set(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push((cidr_of(pos, item)?, item.clone()));
            }
            out
        }
        Value::Object(o) => {
            let mut out = Vec::with_capacity(o.len());
            for (k, item) in o {
                out.push((cidr_of(pos, item)?, k.clone()));
            }
            out
        }
        _ => Vec::new(),
    })
}

fn cidr_contains_matches(args: &[Value], _: &Context) -> BuiltinResult {
    let lhs = match_operand(1, operand(args, 1)?)?;
    let rhs_val = operand(args, 2)?;
    let mut result = BTreeSet::new();
    for (cidr1, idx1) in &lhs {
        for (cidr2, idx2) in match_operand(2, rhs_val)? {
            if cidr_contains(cidr1, &cidr2)? {
                result.insert(Value::Array(vec![idx1.clone(), idx2]));
            }
        }
    }
    Ok(Some(Value::Set(result)))
}

/// OPA expands any prefix and relies on query cancellation; the host instead refuses to
/// build more than this many addresses, which bounds the memory one policy call can take.
const MAX_EXPAND: u128 = 1 << 16;

fn cidr_expand(args: &[Value], _: &Context) -> BuiltinResult {
    let text = str_arg(args, 1)?;
    let (ip, net) = parse_cidr(text)?;
    let (ones, bits) = net.mask_size().unwrap_or((0, 0));
    let host_bits = u32::try_from(bits - ones).unwrap_or(u32::MAX);
    let count = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
    if count > MAX_EXPAND {
        return Err(err(format!(
            "net.cidr_expand: {text} has more than {MAX_EXPAND} addresses, which the ACGS host does not expand"
        )));
    }
    let mut cur = mask_ip(&ip, &net.mask).unwrap_or_default();
    let mut out = BTreeSet::new();
    while net.contains(&cur) {
        out.insert(Value::String(ip_string(&cur)));
        // Increment with carry; wrapping to all-zero ends the walk.
        let mut carried = true;
        for b in cur.iter_mut().rev() {
            *b = b.wrapping_add(1);
            if *b != 0 {
                carried = false;
                break;
            }
        }
        if carried {
            break;
        }
    }
    Ok(Some(Value::Set(out)))
}

fn cidr_is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let ok = matches!(operand(args, 1)?, Value::String(s) if parse_cidr(s).is_ok());
    Ok(Some(Value::Bool(ok)))
}

/// `generateIPNet`: a bare IPv4 address gets its classful default mask, unmasked, as Go's
/// `IP.DefaultMask` gives it.
fn merge_input(v: &Value) -> Result<IpNet, BuiltinError> {
    let s = v.as_str().ok_or_else(|| err("element must be string"))?;
    match parse_ip(s) {
        None => parse_cidr(s).map(|(_, n)| n),
        Some(ip) => {
            let Some(v4) = to4(&ip) else {
                return Err(err("IPv6 invalid: needs prefix length"));
            };
            let ones = match v4.first().copied().unwrap_or(0) {
                b if b < 0x80 => 8,
                b if b < 0xc0 => 16,
                _ => 24,
            };
            Ok(IpNet {
                ip: ip.to_vec(),
                mask: cidr_mask(ones, 32),
            })
        }
    }
}

/// First and last address of a network as 128-bit integers over the 16-byte form
/// (IPv4 as IPv4-mapped), like the Cilium-derived merge code OPA uses.
fn range_of(n: &IpNet) -> (u128, u128) {
    let first_bytes = mask_ip(&n.ip, &n.mask).unwrap_or_default();
    let mut full = [0u8; 16];
    if first_bytes.len() == 4 {
        if let Some(dst) = full.get_mut(..12) {
            dst.copy_from_slice(&V4_IN_V6);
        }
    }
    let off = 16usize.saturating_sub(first_bytes.len());
    for (i, b) in first_bytes.iter().enumerate() {
        if let Some(slot) = full.get_mut(off + i) {
            *slot = *b;
        }
    }
    let first = u128::from_be_bytes(full);
    let host_bits = n.mask.iter().map(|b| b.count_zeros()).sum::<u32>();
    let host = 1u128.checked_shl(host_bits).map_or(u128::MAX, |v| v - 1);
    (first, first | host)
}

const MAPPED_BASE: u128 = 0xffff_0000_0000;

fn is_mapped(v: u128) -> bool {
    v >> 32 == 0xffff
}

fn u128_ip_string(v: u128) -> String {
    ip_string(&v.to_be_bytes())
}

/// The fewest aligned CIDR blocks covering `first..=last`.
fn range_to_cidrs(first: u128, last: u128) -> Vec<String> {
    let v4 = is_mapped(first);
    let width = if v4 { 32u32 } else { 128 };
    let mut out = Vec::new();
    let mut cur = first;
    loop {
        let rel = if v4 { cur - MAPPED_BASE } else { cur };
        let align = if rel == 0 {
            width
        } else {
            rel.trailing_zeros().min(width)
        };
        let mut size_bits = align;
        while size_bits > 0 {
            let span = 1u128.checked_shl(size_bits).map_or(u128::MAX, |s| s - 1);
            if cur.checked_add(span).is_some_and(|end| end <= last) {
                break;
            }
            size_bits -= 1;
        }
        out.push(format!("{}/{}", u128_ip_string(cur), width - size_bits));
        let span = 1u128.checked_shl(size_bits).map_or(u128::MAX, |s| s - 1);
        match cur.checked_add(span) {
            Some(end) if end < last => cur = end + 1,
            _ => break,
        }
    }
    out
}

fn cidr_merge(args: &[Value], _: &Context) -> BuiltinResult {
    let items: Vec<&Value> = match operand(args, 1)? {
        Value::Array(a) => a.iter().collect(),
        Value::Set(s) => s.iter().collect(),
        _ => return Err(err("operand must be an array")),
    };
    let mut ranges: Vec<(u128, u128, Option<IpNet>)> = Vec::with_capacity(items.len());
    for item in items {
        let n = merge_input(item)?;
        let (first, last) = range_of(&n);
        ranges.push((first, last, Some(n)));
    }
    ranges.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    // Walk from the highest range down, folding each into its predecessor when they touch.
    let mut i = ranges.len();
    while i > 1 {
        i -= 1;
        let (Some(cur), Some(prev)) = (ranges.get(i).cloned(), ranges.get(i - 1).cloned()) else {
            break;
        };
        let before_first = if cur.0 == 0 || cur.0 == MAPPED_BASE {
            cur.0
        } else {
            cur.0 - 1
        };
        if before_first <= prev.1 {
            if let Some(slot) = ranges.get_mut(i - 1) {
                *slot = (prev.0.min(cur.0), cur.1, None);
            }
            ranges.remove(i);
        }
    }
    let mut out = BTreeSet::new();
    for (first, last, net) in ranges {
        match net {
            Some(n) => {
                out.insert(Value::String(n.to_go_string()));
            }
            None => out.extend(range_to_cidrs(first, last).into_iter().map(Value::String)),
        }
    }
    Ok(Some(Value::Set(out)))
}

fn lookup_ip_addr(args: &[Value], _: &Context) -> BuiltinResult {
    use std::net::ToSocketAddrs;
    let name = str_arg(args, 1)?;
    let addrs = (name, 0u16)
        .to_socket_addrs()
        .map_err(|e| err(format!("lookup {name}: {e}")))?;
    let set = addrs
        .map(|a| Value::String(ip_string(&ip_bytes(a.ip()))))
        .collect::<BTreeSet<_>>();
    Ok(Some(Value::Set(set)))
}

fn ip_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Upper bound on lines one `print` call writes: each operand is a set and OPA prints their
/// cross product, which a hostile policy could make enormous.
const MAX_PRINT_LINES: usize = 1000;

/// `internal.print` (what the compiler turns `print(...)` into): one array of sets, one per
/// argument. OPA's Wasm compiler declares it void and drops whatever the host returns, so the
/// only observable effect is the optional stderr line, written when ACGS_POLICY_PRINT=1.
fn print(args: &[Value], _: &Context) -> BuiltinResult {
    if std::env::var("ACGS_POLICY_PRINT").as_deref() != Ok("1") {
        return Ok(Some(Value::Null));
    }
    let arr = operand(args, 1)?;
    let items: Vec<Value> = match arr {
        Value::Array(a) => a.clone(),
        // The plain `print` name receives its arguments directly.
        _ => args.to_vec(),
    };
    let mut columns: Vec<Vec<String>> = Vec::with_capacity(items.len());
    for item in &items {
        columns.push(match item {
            Value::String(s) => vec![s.clone()],
            Value::Number(_) | Value::Bool(_) | Value::Null => vec![opa_string(item)],
            Value::Set(s) if s.is_empty() => vec!["<undefined>".into()],
            Value::Set(s) => s
                .iter()
                .map(|v| match v {
                    Value::String(x) => x.clone(),
                    other => opa_string(other),
                })
                .collect(),
            other => return Err(err(format!("illegal argument type: {}", other.type_name()))),
        });
    }
    let mut lines = vec![String::new()];
    for (i, col) in columns.iter().enumerate() {
        let mut next = Vec::new();
        for prefix in &lines {
            for cell in col {
                if next.len() >= MAX_PRINT_LINES {
                    break;
                }
                next.push(if i == 0 {
                    cell.clone()
                } else {
                    format!("{prefix} {cell}")
                });
            }
        }
        lines = next;
    }
    for line in lines {
        eprintln!("{line}");
    }
    Ok(Some(Value::Null))
}

/// OPA's `Value.String()`: Rego syntax with `", "` and `": "` separators.
fn opa_string(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(opa_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Set(s) if s.is_empty() => "set()".into(),
        Value::Set(s) => format!(
            "{{{}}}",
            s.iter().map(opa_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", opa_string(k), opa_string(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_rego(),
    }
}

fn trace(args: &[Value], _: &Context) -> BuiltinResult {
    str_arg(args, 1)?;
    Ok(Some(Value::Bool(true)))
}

/// OPA's runtime object. The environment is deliberately empty: agent-facing policies must
/// not be able to read the host's secrets through `opa.runtime().env`.
fn opa_runtime(_: &[Value], _: &Context) -> BuiltinResult {
    let mut o = BTreeMap::new();
    o.insert(Value::str("env"), Value::Object(BTreeMap::new()));
    o.insert(Value::str("version"), Value::str(env!("CARGO_PKG_VERSION")));
    o.insert(Value::str("commit"), Value::str(""));
    Ok(Some(Value::Object(o)))
}

/// ACGS evaluates policies as pure functions of their input and data: a decision must be
/// reproducible from the audit record, cacheable, and unable to exfiltrate request contents
/// or probe internal services. Outbound HTTP would break all three, so the host refuses it.
fn http_send(_: &[Value], _: &Context) -> BuiltinResult {
    Err(err("http.send is disabled by the ACGS host"))
}

/// Exposed for the AWS signer, which formats set-valued messages the way OPA prints sets.
fn set_string(items: &[&str]) -> String {
    let set: BTreeSet<Value> = items.iter().map(|s| Value::str(*s)).collect();
    opa_string(&Value::Set(set))
}

fn number_i64(n: &Number) -> Option<i64> {
    match n {
        Number::Int(i) => Some(*i),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
