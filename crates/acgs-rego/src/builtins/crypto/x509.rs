//! crypto.x509.* and private-key parsing, producing the JSON Go's `encoding/json` gives for
//! `x509.Certificate`, `x509.CertificateRequest`, `tls.Certificate` and the private key types.

use std::collections::BTreeMap;

use rsa::traits::{PrivateKeyParts, PublicKeyParts};

use super::der::{self, Der, Tlv};
use super::encode::{b64_std_decode, b64_std_encode, pem_decode};
use super::keys::{self, PrivateKey, PublicKey};
use super::{err, operand, str_arg, type_err, BuiltinError};
use crate::builtins::{BuiltinResult, Context};
use crate::value::{Number, Value};

type Object = BTreeMap<Value, Value>;

const MALFORMED: &str = "x509: malformed certificate";

fn obj(entries: Vec<(&str, Value)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (Value::str(k), v))
            .collect(),
    )
}

fn bytes_json(b: &[u8]) -> Value {
    Value::String(b64_std_encode(b))
}

fn opt_bytes(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, bytes_json)
}

fn strings(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::Array(v.iter().map(|s| Value::str(s.as_str())).collect())
    }
}

fn int(i: i64) -> Value {
    Value::int(i)
}

fn big_decimal(text: String) -> Value {
    Value::Number(Number::parse(&text).unwrap_or(Number::Int(0)))
}

fn big_uint(b: &rsa::BigUint) -> Value {
    big_decimal(b.to_string())
}

fn oid_json(arcs: &[u64]) -> Value {
    Value::Array(
        arcs.iter()
            .map(|a| int(i64::try_from(*a).unwrap_or(i64::MAX)))
            .collect(),
    )
}

fn arcs_of(t: &Tlv<'_>) -> Result<Vec<u64>, BuiltinError> {
    if t.tag != der::OID {
        return Err(err(MALFORMED));
    }
    der::oid_arcs(t.content).ok_or_else(|| err("x509: invalid OID"))
}

fn is(arcs: &[u64], dotted: &str) -> bool {
    der::oid_string(arcs) == dotted
}

/// Go's `net.IP.String` for 4- and 16-byte addresses.
fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => b.iter().map(u8::to_string).collect::<Vec<_>>().join("."),
        16 => {
            if b.get(..12) == Some(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][..]) {
                return ip_text(b.get(12..).unwrap_or_default());
            }
            <[u8; 16]>::try_from(b).map_or_else(
                |_| String::new(),
                |a| std::net::Ipv6Addr::from(a).to_string(),
            )
        }
        _ => String::new(),
    }
}

/// An X.500 name as Go's `pkix.Name` marshals it.
fn parse_name(raw: &[u8]) -> Result<Value, BuiltinError> {
    let bad = || err("x509: invalid RDNSequence");
    let mut outer = Der::new(raw);
    let seq = outer.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let mut rdns = Der::new(seq.content);
    let mut fields: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut serial = String::new();
    let mut common = String::new();
    let mut names = Vec::new();
    while !rdns.is_empty() {
        let set = rdns.read_tag(der::SET).ok_or_else(bad)?;
        let mut atvs = Der::new(set.content);
        while !atvs.is_empty() {
            let atv = atvs.read_tag(der::SEQUENCE).ok_or_else(bad)?;
            let mut parts = Der::new(atv.content);
            let oid = parts.read_tag(der::OID).ok_or_else(bad)?;
            let arcs = der::oid_arcs(oid.content).ok_or_else(bad)?;
            let value = parts.read().ok_or_else(bad)?;
            let text = asn1_string(&value)?;
            names.push(obj(vec![
                ("Type", oid_json(&arcs)),
                ("Value", Value::str(text.as_str())),
            ]));
            if arcs.len() == 4 && arcs.get(..3) == Some(&[2, 5, 4][..]) {
                let field = match arcs.get(3) {
                    Some(6) => "Country",
                    Some(10) => "Organization",
                    Some(11) => "OrganizationalUnit",
                    Some(7) => "Locality",
                    Some(8) => "Province",
                    Some(9) => "StreetAddress",
                    Some(17) => "PostalCode",
                    Some(5) => {
                        serial = text;
                        continue;
                    }
                    Some(3) => {
                        common = text;
                        continue;
                    }
                    _ => continue,
                };
                fields.entry(field).or_default().push(text);
            }
        }
    }
    let list = |k: &str| strings(fields.get(k).map(Vec::as_slice).unwrap_or_default());
    Ok(obj(vec![
        ("Country", list("Country")),
        ("Organization", list("Organization")),
        ("OrganizationalUnit", list("OrganizationalUnit")),
        ("Locality", list("Locality")),
        ("Province", list("Province")),
        ("StreetAddress", list("StreetAddress")),
        ("PostalCode", list("PostalCode")),
        ("SerialNumber", Value::String(serial)),
        ("CommonName", Value::String(common)),
        (
            "Names",
            if names.is_empty() {
                Value::Null
            } else {
                Value::Array(names)
            },
        ),
        ("ExtraNames", Value::Null),
    ]))
}

/// The string types X.509 names use, decoded as Go's parser does.
fn asn1_string(t: &Tlv<'_>) -> Result<String, BuiltinError> {
    let utf8 =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| err("x509: invalid UTF-8 string"));
    match t.tag {
        0x0c => utf8(t.content),
        0x13 | 0x16 | 0x12 => {
            if t.content.is_ascii() {
                utf8(t.content)
            } else {
                Err(err("x509: invalid string"))
            }
        }
        // T61String: Go takes the bytes as they are.
        0x14 => Ok(String::from_utf8_lossy(t.content).into_owned()),
        0x1e => {
            if t.content.len() % 2 != 0 {
                return Err(err("x509: invalid BMPString"));
            }
            let units: Vec<u16> = t
                .content
                .chunks(2)
                .map(|c| {
                    u16::from_be_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .collect();
            String::from_utf16(&units).map_err(|_| err("x509: invalid BMPString"))
        }
        tag => Err(err(format!("x509: unsupported string type: {tag}"))),
    }
}

/// `x509.SignatureAlgorithm` for an AlgorithmIdentifier.
fn signature_algorithm(alg: &Tlv<'_>) -> Result<i64, BuiltinError> {
    let mut d = Der::new(alg.content);
    let oid = der::oid_string(&arcs_of(&d.read().ok_or_else(|| err(MALFORMED))?)?);
    Ok(match oid.as_str() {
        "1.2.840.113549.1.1.2" => 1,
        "1.2.840.113549.1.1.4" => 2,
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => 3,
        "1.2.840.113549.1.1.11" => 4,
        "1.2.840.113549.1.1.12" => 5,
        "1.2.840.113549.1.1.13" => 6,
        "1.2.840.10040.4.3" => 7,
        "2.16.840.1.101.3.4.3.2" => 8,
        "1.2.840.10045.4.1" => 9,
        "1.2.840.10045.4.3.2" => 10,
        "1.2.840.10045.4.3.3" => 11,
        "1.2.840.10045.4.3.4" => 12,
        "1.3.101.112" => 16,
        "1.2.840.113549.1.1.10" => pss_algorithm(d.rest()),
        _ => 0,
    })
}

/// RSASSA-PSS parameters name their hash in an explicitly tagged AlgorithmIdentifier.
fn pss_algorithm(params: &[u8]) -> i64 {
    let hash = (|| {
        let seq = Der::new(params).read_tag(der::SEQUENCE)?;
        let tagged = Der::new(seq.content).read_tag(0xa0)?;
        let alg = Der::new(tagged.content).read_tag(der::SEQUENCE)?;
        let oid = Der::new(alg.content).read_tag(der::OID)?;
        der::oid_arcs(oid.content).map(|a| der::oid_string(&a))
    })();
    match hash.as_deref() {
        Some("2.16.840.1.101.3.4.2.1") => 13,
        Some("2.16.840.1.101.3.4.2.2") => 14,
        Some("2.16.840.1.101.3.4.2.3") => 15,
        _ => 0,
    }
}

/// `PublicKeyAlgorithm` and the JSON of `PublicKey` for a SubjectPublicKeyInfo.
fn public_key_json(spki: &[u8]) -> Result<(i64, Value, Option<PublicKey>), BuiltinError> {
    let mut d = Der::new(spki);
    let seq = d.read_tag(der::SEQUENCE).ok_or_else(|| err(MALFORMED))?;
    let mut parts = Der::new(seq.content);
    let alg = parts
        .read_tag(der::SEQUENCE)
        .ok_or_else(|| err(MALFORMED))?;
    let oid = der::oid_string(&arcs_of(
        &Der::new(alg.content).read().ok_or_else(|| err(MALFORMED))?,
    )?);
    let algo = match oid.as_str() {
        "1.2.840.113549.1.1.1" => 1,
        "1.2.840.10040.4.1" => 2,
        "1.2.840.10045.2.1" => 3,
        "1.3.101.112" => 4,
        _ => 0,
    };
    if algo == 0 || algo == 2 {
        // DSA keys are parsed by Go but are too rare in policy inputs to model here.
        return Ok((algo, Value::Null, None));
    }
    let key = keys::parse_pkix_public_key(spki).map_err(err)?;
    let json = match &key {
        PublicKey::Rsa(k) => obj(vec![("N", big_uint(k.n())), ("E", big_uint(k.e()))]),
        PublicKey::P256(k) => ec_point_json(&k.to_encoded_point(false).to_bytes()),
        PublicKey::P384(k) => ec_point_json(&k.to_encoded_point(false).to_bytes()),
        PublicKey::P521(k) => ec_point_json(&k.to_encoded_point(false).to_bytes()),
        PublicKey::Ed25519(k) => bytes_json(k.as_bytes()),
        PublicKey::Secret(_) | PublicKey::Other => Value::Null,
    };
    Ok((algo, json, Some(key)))
}

/// `ecdsa.PublicKey` marshals its curve as `{}` and the coordinates as integers.
fn ec_point_json(sec1: &[u8]) -> Value {
    let coords = sec1.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    obj(vec![
        ("Curve", Value::Object(Object::new())),
        ("X", big_uint(&rsa::BigUint::from_bytes_be(x))),
        ("Y", big_uint(&rsa::BigUint::from_bytes_be(y))),
    ])
}

/// One parsed certificate: its JSON and what chain verification needs.
pub(super) struct Cert {
    json: Object,
    raw: Vec<u8>,
    raw_tbs: Vec<u8>,
    raw_subject: Vec<u8>,
    raw_issuer: Vec<u8>,
    signature: Vec<u8>,
    sig_alg: i64,
    key: Option<PublicKey>,
    not_before: i64,
    not_after: i64,
    version: i64,
    bc_valid: bool,
    is_ca: bool,
    max_path_len: i64,
    key_usage: i64,
    ext_key_usage: Vec<i64>,
    unknown_eku: usize,
    dns_names: Vec<String>,
    ip_addresses: Vec<Vec<u8>>,
    emails: Vec<String>,
    uris: Vec<String>,
    has_san: bool,
    constraints: Option<NameConstraints>,
    require_explicit_policy: Option<i64>,
    unhandled_critical: bool,
}

/// The name constraints a CA places on the certificates below it.
#[derive(Default)]
struct NameConstraints {
    permitted_dns: Vec<String>,
    excluded_dns: Vec<String>,
    permitted_ips: Vec<Vec<u8>>,
    excluded_ips: Vec<Vec<u8>>,
    permitted_emails: Vec<String>,
    excluded_emails: Vec<String>,
    permitted_uris: Vec<String>,
    excluded_uris: Vec<String>,
}

#[derive(Default)]
struct Extensions {
    list: Vec<Value>,
    has_san: bool,
    has_name_constraints: bool,
    key_usage: i64,
    bc_valid: bool,
    is_ca: bool,
    max_path_len: i64,
    eku: Vec<i64>,
    unknown_eku: Vec<Vec<u64>>,
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
    ocsp: Vec<String>,
    issuers: Vec<String>,
    dns: Vec<String>,
    emails: Vec<String>,
    ips: Vec<Vec<u8>>,
    uris: Vec<String>,
    crl: Vec<String>,
    policies: Vec<Vec<u64>>,
    policy_mappings: Vec<(String, String)>,
    permitted_dns_critical: bool,
    permitted_dns: Vec<String>,
    excluded_dns: Vec<String>,
    permitted_ips: Vec<Vec<u8>>,
    excluded_ips: Vec<Vec<u8>>,
    permitted_emails: Vec<String>,
    excluded_emails: Vec<String>,
    permitted_uris: Vec<String>,
    excluded_uris: Vec<String>,
    inhibit_any: Option<i64>,
    require_explicit: Option<i64>,
    inhibit_mapping: Option<i64>,
    unhandled: Vec<Vec<u64>>,
}

fn seq_of(content: &[u8]) -> Result<Der<'_>, BuiltinError> {
    let seq = Der::new(content)
        .read_tag(der::SEQUENCE)
        .ok_or_else(|| err(MALFORMED))?;
    Ok(Der::new(seq.content))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Extensions {
    fn parse(seq: &[u8]) -> Result<Extensions, BuiltinError> {
        let mut x = Extensions::default();
        let mut exts = Der::new(seq);
        while !exts.is_empty() {
            let e = exts.read_tag(der::SEQUENCE).ok_or_else(|| err(MALFORMED))?;
            let mut parts = Der::new(e.content);
            let arcs = arcs_of(&parts.read().ok_or_else(|| err(MALFORMED))?)?;
            let critical = match parts.optional(der::BOOLEAN).ok_or_else(|| err(MALFORMED))? {
                Some(b) => b.content.first().is_some_and(|v| *v != 0),
                None => false,
            };
            let value = parts
                .read_tag(der::OCTET_STRING)
                .ok_or_else(|| err(MALFORMED))?
                .content;
            x.list.push(obj(vec![
                ("Id", oid_json(&arcs)),
                ("Critical", Value::Bool(critical)),
                ("Value", bytes_json(value)),
            ]));
            let handled = x.apply(&arcs, critical, value)?;
            if critical && !handled {
                x.unhandled.push(arcs);
            }
        }
        Ok(x)
    }

    /// Interprets one extension; false when Go would count it as unhandled.
    fn apply(&mut self, arcs: &[u64], critical: bool, value: &[u8]) -> Result<bool, BuiltinError> {
        if is(arcs, "1.3.6.1.5.5.7.1.1") {
            let mut items = seq_of(value)?;
            while !items.is_empty() {
                let ad = items
                    .read_tag(der::SEQUENCE)
                    .ok_or_else(|| err("x509: invalid authority info access"))?;
                let mut p = Der::new(ad.content);
                let method = der::oid_string(&arcs_of(&p.read().ok_or_else(|| err(MALFORMED))?)?);
                if let Some(Some(loc)) = p.optional(0x86) {
                    match method.as_str() {
                        "1.3.6.1.5.5.7.48.1" => self.ocsp.push(text(loc.content)),
                        "1.3.6.1.5.5.7.48.2" => self.issuers.push(text(loc.content)),
                        _ => {}
                    }
                }
            }
            return Ok(true);
        }
        if arcs.len() != 4 || arcs.get(..3) != Some(&[2, 5, 29][..]) {
            return Ok(false);
        }
        match arcs.get(3).copied().unwrap_or(0) {
            15 => {
                let bits = Der::new(value)
                    .read_tag(der::BIT_STRING)
                    .ok_or_else(|| err("x509: invalid key usage"))?;
                let bytes =
                    der::bit_string(bits.content).ok_or_else(|| err("x509: invalid key usage"))?;
                self.key_usage = 0;
                for i in 0..9usize {
                    if bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0) {
                        self.key_usage |= 1 << i;
                    }
                }
            }
            19 => {
                let mut p = seq_of(value)?;
                self.is_ca = match p
                    .optional(der::BOOLEAN)
                    .ok_or_else(|| err("x509: invalid basic constraints"))?
                {
                    Some(b) => b.content.first().is_some_and(|v| *v != 0),
                    None => false,
                };
                self.max_path_len = match p
                    .optional(der::INTEGER)
                    .ok_or_else(|| err("x509: invalid basic constraints"))?
                {
                    Some(i) => der::int_i64(i.content)
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| err("x509: invalid basic constraints"))?,
                    None => -1,
                };
                self.bc_valid = true;
            }
            17 => {
                self.has_san = true;
                self.parse_san(value)?;
                return Ok(!(self.dns.is_empty()
                    && self.emails.is_empty()
                    && self.ips.is_empty()
                    && self.uris.is_empty()));
            }
            30 => self.parse_name_constraints(critical, value)?,
            31 => {
                let mut dps = seq_of(value)?;
                while !dps.is_empty() {
                    let dp = dps
                        .read_tag(der::SEQUENCE)
                        .ok_or_else(|| err("x509: invalid CRL distribution point"))?;
                    let Some(Some(name)) = Der::new(dp.content).optional(0xa0) else {
                        continue;
                    };
                    let Some(Some(full)) = Der::new(name.content).optional(0xa0) else {
                        continue;
                    };
                    let mut gns = Der::new(full.content);
                    while let Some(Some(uri)) = gns.optional(0x86) {
                        self.crl.push(text(uri.content));
                    }
                }
            }
            35 => {
                if critical {
                    return Err(err(
                        "x509: authority key identifier incorrectly marked critical",
                    ));
                }
                let mut p = seq_of(value)?;
                if let Some(Some(id)) = p.optional(0x80) {
                    self.aki = Some(id.content.to_vec());
                }
            }
            36 => {
                let mut p = seq_of(value)?;
                if let Some(Some(v)) = p.optional(0x80) {
                    self.require_explicit = der::int_i64(v.content);
                }
                if let Some(Some(v)) = p.optional(0x81) {
                    self.inhibit_mapping = der::int_i64(v.content);
                }
            }
            37 => {
                let mut p = seq_of(value)?;
                while !p.is_empty() {
                    let oid = arcs_of(
                        &p.read()
                            .ok_or_else(|| err("x509: invalid extended key usages"))?,
                    )?;
                    match eku_value(&oid) {
                        Some(v) => self.eku.push(v),
                        None => self.unknown_eku.push(oid),
                    }
                }
            }
            14 => {
                if critical {
                    return Err(err(
                        "x509: subject key identifier incorrectly marked critical",
                    ));
                }
                let id = Der::new(value)
                    .read_tag(der::OCTET_STRING)
                    .ok_or_else(|| err("x509: invalid subject key identifier"))?;
                self.ski = Some(id.content.to_vec());
            }
            32 => {
                let mut p = seq_of(value)?;
                while !p.is_empty() {
                    let info = p
                        .read_tag(der::SEQUENCE)
                        .ok_or_else(|| err("x509: invalid certificate policies"))?;
                    let oid = arcs_of(
                        &Der::new(info.content)
                            .read()
                            .ok_or_else(|| err(MALFORMED))?,
                    )?;
                    self.policies.push(oid);
                }
            }
            33 => {
                let mut p = seq_of(value)?;
                while !p.is_empty() {
                    let m = p
                        .read_tag(der::SEQUENCE)
                        .ok_or_else(|| err("x509: invalid policy mappings extension"))?;
                    let mut q = Der::new(m.content);
                    let a = arcs_of(&q.read().ok_or_else(|| err(MALFORMED))?)?;
                    let b = arcs_of(&q.read().ok_or_else(|| err(MALFORMED))?)?;
                    self.policy_mappings
                        .push((der::oid_string(&a), der::oid_string(&b)));
                }
            }
            54 => {
                let v = Der::new(value)
                    .read_tag(der::INTEGER)
                    .ok_or_else(|| err("x509: invalid inhibit any policy extension"))?;
                self.inhibit_any = der::int_i64(v.content);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn parse_san(&mut self, value: &[u8]) -> Result<(), BuiltinError> {
        let mut names = seq_of(value)?;
        while !names.is_empty() {
            let gn = names
                .read()
                .ok_or_else(|| err("x509: invalid subject alternative name"))?;
            let ia5 = |what: &str| {
                if gn.content.is_ascii() {
                    Ok(text(gn.content))
                } else {
                    Err(err(format!("x509: SAN {what} is malformed")))
                }
            };
            match gn.tag & 0x1f {
                1 => self.emails.push(ia5("rfc822Name")?),
                2 => self.dns.push(ia5("dNSName")?),
                6 => self.uris.push(ia5("uniformResourceIdentifier")?),
                7 => match gn.content.len() {
                    4 | 16 => self.ips.push(gn.content.to_vec()),
                    n => return Err(err(format!("x509: cannot parse IP address of length {n}"))),
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn parse_name_constraints(&mut self, critical: bool, value: &[u8]) -> Result<(), BuiltinError> {
        self.permitted_dns_critical = critical;
        self.has_name_constraints = true;
        let mut p = seq_of(value)?;
        for (tag, permitted) in [(0xa0u8, true), (0xa1u8, false)] {
            let Some(Some(subtrees)) = p.optional(tag) else {
                continue;
            };
            let mut trees = Der::new(subtrees.content);
            while !trees.is_empty() {
                let st = trees
                    .read_tag(der::SEQUENCE)
                    .ok_or_else(|| err("x509: invalid NameConstraints extension"))?;
                let base = Der::new(st.content)
                    .read()
                    .ok_or_else(|| err("x509: invalid NameConstraints extension"))?;
                let t = text(base.content);
                match (base.tag & 0x1f, permitted) {
                    (2, true) => self.permitted_dns.push(t),
                    (2, false) => self.excluded_dns.push(t),
                    (1, true) => self.permitted_emails.push(t),
                    (1, false) => self.excluded_emails.push(t),
                    (6, true) => self.permitted_uris.push(t),
                    (6, false) => self.excluded_uris.push(t),
                    (7, true) => self.permitted_ips.push(base.content.to_vec()),
                    (7, false) => self.excluded_ips.push(base.content.to_vec()),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn eku_value(oid: &[u64]) -> Option<i64> {
    Some(match der::oid_string(oid).as_str() {
        "2.5.29.37.0" => 0,
        "1.3.6.1.5.5.7.3.1" => 1,
        "1.3.6.1.5.5.7.3.2" => 2,
        "1.3.6.1.5.5.7.3.3" => 3,
        "1.3.6.1.5.5.7.3.4" => 4,
        "1.3.6.1.5.5.7.3.5" => 5,
        "1.3.6.1.5.5.7.3.6" => 6,
        "1.3.6.1.5.5.7.3.7" => 7,
        "1.3.6.1.5.5.7.3.8" => 8,
        "1.3.6.1.5.5.7.3.9" => 9,
        "1.3.6.1.4.1.311.10.3.3" => 10,
        "2.16.840.1.113730.4.1" => 11,
        "1.3.6.1.4.1.311.2.1.22" => 12,
        "1.3.6.1.4.1.311.61.1.1" => 13,
        _ => return None,
    })
}

fn ip_nets(v: &[Vec<u8>]) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    Value::Array(
        v.iter()
            .map(|b| {
                let (ip, mask) = b.split_at(b.len() / 2);
                obj(vec![
                    ("IP", Value::String(ip_text(ip))),
                    ("Mask", bytes_json(mask)),
                ])
            })
            .collect(),
    )
}

/// Go's `url.URL` as JSON, for the URIs of a SAN extension.
fn url_json(s: &str) -> Value {
    let (rest, fragment) = s.split_once('#').map_or((s, ""), |(a, f)| (a, f));
    let mut scheme = String::new();
    let mut rest = rest;
    if let Some((sch, after)) = rest.split_once(':') {
        let ok = sch.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && sch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if ok {
            scheme = sch.to_ascii_lowercase();
            rest = after;
        }
    }
    let (rest, query, force_query) = match rest.split_once('?') {
        Some((a, "")) => (a, "", true),
        Some((a, q)) => (a, q, false),
        None => (rest, "", false),
    };
    let mut host = String::new();
    let mut user = Value::Null;
    let mut opaque = String::new();
    let mut path = rest;
    if let Some(after) = rest.strip_prefix("//") {
        let (authority, p) = after.find('/').map_or((after, ""), |i| {
            (
                after.get(..i).unwrap_or_default(),
                after.get(i..).unwrap_or_default(),
            )
        });
        host = match authority.rsplit_once('@') {
            Some((_, h)) => {
                user = Value::Object(Object::new());
                h.to_owned()
            }
            None => authority.to_owned(),
        };
        path = p;
    } else if !scheme.is_empty() && !rest.starts_with('/') {
        opaque = rest.to_owned();
        path = "";
    }
    let decoded = percent_decode(path);
    let raw_path = if escape_path(&decoded) == path {
        String::new()
    } else {
        path.to_owned()
    };
    obj(vec![
        ("Scheme", Value::String(scheme)),
        ("Opaque", Value::String(opaque)),
        ("User", user),
        ("Host", Value::String(host)),
        ("Path", Value::String(decoded)),
        ("RawPath", Value::String(raw_path)),
        ("OmitHost", Value::Bool(false)),
        ("ForceQuery", Value::Bool(force_query)),
        ("RawQuery", Value::str(query)),
        ("Fragment", Value::String(percent_decode(fragment))),
        ("RawFragment", Value::str("")),
    ])
}

/// Go's `url.PathEscape`-style encoding used to decide whether `RawPath` is needed.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hexval = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (c, hexval) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn opt_int_pair(v: Option<i64>) -> (Value, Value) {
    match v {
        Some(n) => (int(n), Value::Bool(n == 0)),
        None => (int(0), Value::Bool(false)),
    }
}

/// Parses one DER certificate from the front of `data`, returning the rest.
fn parse_certificate(data: &[u8]) -> Result<(Cert, &[u8]), BuiltinError> {
    let bad = || err(MALFORMED);
    let mut outer = Der::new(data);
    let cert = outer.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let mut c = Der::new(cert.content);
    let tbs = c.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let sig_alg_tlv = c.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let sig_tlv = c.read_tag(der::BIT_STRING).ok_or_else(bad)?;
    let signature = der::bit_string(sig_tlv.content).ok_or_else(bad)?;

    let mut t = Der::new(tbs.content);
    let version = match t.optional(0xa0).ok_or_else(bad)? {
        Some(v) => {
            let i = Der::new(v.content).read_tag(der::INTEGER).ok_or_else(bad)?;
            der::int_i64(i.content).ok_or_else(bad)?
        }
        None => 0,
    } + 1;
    if !(1..=3).contains(&version) {
        return Err(err("x509: invalid version"));
    }
    let serial = t.read_tag(der::INTEGER).ok_or_else(bad)?;
    let _tbs_sig_alg = t.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let issuer = t.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let validity = t.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let subject = t.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let spki = t.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let mut v = Der::new(validity.content);
    let not_before = v
        .read()
        .and_then(|x| der::time(&x))
        .ok_or_else(|| err("x509: malformed validity"))?;
    let not_after = v
        .read()
        .and_then(|x| der::time(&x))
        .ok_or_else(|| err("x509: malformed validity"))?;
    let _ = t.optional(0x81).ok_or_else(bad)?;
    let _ = t.optional(0x82).ok_or_else(bad)?;
    let ext = match t.optional(0xa3).ok_or_else(bad)? {
        Some(e) => {
            let seq = Der::new(e.content)
                .read_tag(der::SEQUENCE)
                .ok_or_else(bad)?;
            Extensions::parse(seq.content)?
        }
        None => Extensions::default(),
    };

    let sig_alg = signature_algorithm(&sig_alg_tlv)?;
    let (pk_alg, pk_json, key) = public_key_json(spki.raw)?;
    let uri_strings = strings(&ext.uris);
    let (inhibit_any, inhibit_any_zero) = opt_int_pair(ext.inhibit_any);
    let (inhibit_map, inhibit_map_zero) = opt_int_pair(ext.inhibit_mapping);
    let (require, require_zero) = opt_int_pair(ext.require_explicit);
    let policies = if ext.policies.is_empty() {
        Value::Null
    } else {
        Value::Array(
            ext.policies
                .iter()
                .map(|p| Value::String(der::oid_string(p)))
                .collect(),
        )
    };
    let policy_ids = if ext.policies.is_empty() {
        Value::Null
    } else {
        Value::Array(ext.policies.iter().map(|p| oid_json(p)).collect())
    };
    let json = obj(vec![
        ("Raw", bytes_json(cert.raw)),
        ("RawTBSCertificate", bytes_json(tbs.raw)),
        ("RawSubjectPublicKeyInfo", bytes_json(spki.raw)),
        ("RawSubject", bytes_json(subject.raw)),
        ("RawIssuer", bytes_json(issuer.raw)),
        ("Signature", bytes_json(signature)),
        ("SignatureAlgorithm", int(sig_alg)),
        ("PublicKeyAlgorithm", int(pk_alg)),
        ("PublicKey", pk_json),
        ("Version", int(version)),
        (
            "SerialNumber",
            big_decimal(der::int_decimal(serial.content)),
        ),
        ("Issuer", parse_name(issuer.raw)?),
        ("Subject", parse_name(subject.raw)?),
        ("NotBefore", Value::String(der::rfc3339(not_before))),
        ("NotAfter", Value::String(der::rfc3339(not_after))),
        ("KeyUsage", int(ext.key_usage)),
        (
            "Extensions",
            if ext.list.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.list.clone())
            },
        ),
        ("ExtraExtensions", Value::Null),
        (
            "UnhandledCriticalExtensions",
            if ext.unhandled.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.unhandled.iter().map(|o| oid_json(o)).collect())
            },
        ),
        (
            "ExtKeyUsage",
            if ext.eku.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.eku.iter().map(|e| int(*e)).collect())
            },
        ),
        (
            "UnknownExtKeyUsage",
            if ext.unknown_eku.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.unknown_eku.iter().map(|o| oid_json(o)).collect())
            },
        ),
        ("BasicConstraintsValid", Value::Bool(ext.bc_valid)),
        ("IsCA", Value::Bool(ext.is_ca)),
        (
            "MaxPathLen",
            int(if ext.bc_valid { ext.max_path_len } else { 0 }),
        ),
        (
            "MaxPathLenZero",
            Value::Bool(ext.bc_valid && ext.max_path_len == 0),
        ),
        ("SubjectKeyId", opt_bytes(ext.ski.as_deref())),
        ("AuthorityKeyId", opt_bytes(ext.aki.as_deref())),
        ("OCSPServer", strings(&ext.ocsp)),
        ("IssuingCertificateURL", strings(&ext.issuers)),
        ("DNSNames", strings(&ext.dns)),
        ("EmailAddresses", strings(&ext.emails)),
        (
            "IPAddresses",
            if ext.ips.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.ips.iter().map(|b| Value::String(ip_text(b))).collect())
            },
        ),
        (
            "URIs",
            if ext.uris.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.uris.iter().map(|u| url_json(u)).collect())
            },
        ),
        (
            "PermittedDNSDomainsCritical",
            Value::Bool(ext.permitted_dns_critical),
        ),
        ("PermittedDNSDomains", strings(&ext.permitted_dns)),
        ("ExcludedDNSDomains", strings(&ext.excluded_dns)),
        ("PermittedIPRanges", ip_nets(&ext.permitted_ips)),
        ("ExcludedIPRanges", ip_nets(&ext.excluded_ips)),
        ("PermittedEmailAddresses", strings(&ext.permitted_emails)),
        ("ExcludedEmailAddresses", strings(&ext.excluded_emails)),
        ("PermittedURIDomains", strings(&ext.permitted_uris)),
        ("ExcludedURIDomains", strings(&ext.excluded_uris)),
        ("CRLDistributionPoints", strings(&ext.crl)),
        ("PolicyIdentifiers", policy_ids),
        ("Policies", policies),
        ("InhibitAnyPolicy", inhibit_any),
        ("InhibitAnyPolicyZero", inhibit_any_zero),
        ("InhibitPolicyMapping", inhibit_map),
        ("InhibitPolicyMappingZero", inhibit_map_zero),
        ("RequireExplicitPolicy", require),
        ("RequireExplicitPolicyZero", require_zero),
        (
            "PolicyMappings",
            if ext.policy_mappings.is_empty() {
                Value::Null
            } else {
                Value::Array(
                    ext.policy_mappings
                        .iter()
                        .map(|(a, b)| {
                            obj(vec![
                                ("IssuerDomainPolicy", Value::str(a.as_str())),
                                ("SubjectDomainPolicy", Value::str(b.as_str())),
                            ])
                        })
                        .collect(),
                )
            },
        ),
    ]);
    let Value::Object(mut json) = json else {
        return Err(bad());
    };
    json.insert(Value::str("URIStrings"), uri_strings);
    let cert = Cert {
        json,
        raw: cert.raw.to_vec(),
        raw_tbs: tbs.raw.to_vec(),
        raw_subject: subject.raw.to_vec(),
        raw_issuer: issuer.raw.to_vec(),
        signature: signature.to_vec(),
        sig_alg,
        key,
        not_before,
        not_after,
        version,
        bc_valid: ext.bc_valid,
        is_ca: ext.is_ca,
        max_path_len: ext.max_path_len,
        key_usage: ext.key_usage,
        ext_key_usage: ext.eku,
        unknown_eku: ext.unknown_eku.len(),
        has_san: ext.has_san,
        constraints: ext.has_name_constraints.then(|| NameConstraints {
            permitted_dns: ext.permitted_dns.clone(),
            excluded_dns: ext.excluded_dns.clone(),
            permitted_ips: ext.permitted_ips.clone(),
            excluded_ips: ext.excluded_ips.clone(),
            permitted_emails: ext.permitted_emails.clone(),
            excluded_emails: ext.excluded_emails.clone(),
            permitted_uris: ext.permitted_uris.clone(),
            excluded_uris: ext.excluded_uris.clone(),
        }),
        require_explicit_policy: ext.require_explicit,
        dns_names: ext.dns,
        ip_addresses: ext.ips,
        emails: ext.emails,
        uris: ext.uris,
        unhandled_critical: !ext.unhandled.is_empty(),
    };
    Ok((cert, outer.rest()))
}

impl Cert {
    /// The JSON OPA returns; `crypto.x509.parse_and_verify_certificates_with_options` omits
    /// the `URIStrings` convenience field.
    fn to_value(&self, uri_strings: bool) -> Value {
        let mut o = self.json.clone();
        if !uri_strings {
            o.remove(&Value::str("URIStrings"));
        }
        Value::Object(o)
    }
}

/// `x509.ParseCertificates`: concatenated DER certificates.
fn parse_der_certificates(mut data: &[u8]) -> Result<Vec<Cert>, BuiltinError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (cert, rest) = parse_certificate(data)?;
        out.push(cert);
        data = rest;
    }
    Ok(out)
}

/// The DER of a certificate's SubjectPublicKeyInfo.
pub(super) fn certificate_spki(der_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || MALFORMED.to_string();
    let cert = Der::new(der_bytes)
        .read_tag(der::SEQUENCE)
        .ok_or_else(bad)?;
    let tbs = Der::new(cert.content)
        .read_tag(der::SEQUENCE)
        .ok_or_else(bad)?;
    let mut t = Der::new(tbs.content);
    t.optional(0xa0).ok_or_else(bad)?;
    for _ in 0..5 {
        t.read().ok_or_else(bad)?;
    }
    Ok(t.read_tag(der::SEQUENCE).ok_or_else(bad)?.raw.to_vec())
}

/// `getX509CertsFromPem`: every block must be a certificate; their bytes are concatenated.
fn certs_from_pem(mut data: &[u8]) -> Result<Vec<Cert>, BuiltinError> {
    let mut der_bytes = Vec::new();
    while !data.is_empty() {
        let Some((block, rest)) = pem_decode(data) else {
            break;
        };
        if block.typ != "CERTIFICATE" {
            return Err(err(format!(
                "PEM block type is '{}', expected CERTIFICATE",
                block.typ
            )));
        }
        der_bytes.extend_from_slice(&block.bytes);
        data = data.get(rest..).unwrap_or_default();
    }
    parse_der_certificates(&der_bytes)
}

/// `getX509CertsFromString`: PEM, base64 of PEM, or base64 of DER.
fn certs_from_string(input: &str) -> Result<Vec<Cert>, BuiltinError> {
    if input.starts_with("-----BEGIN") {
        return certs_from_pem(input.as_bytes());
    }
    let decoded = b64_std_decode(input.as_bytes())?;
    if decoded.starts_with(b"-----BEGIN") {
        return certs_from_pem(&decoded);
    }
    parse_der_certificates(&decoded)
}

pub(super) fn parse_certificates(args: &[Value], _: &Context) -> BuiltinResult {
    let certs = certs_from_string(str_arg(args, 1)?)?;
    Ok(Some(Value::Array(
        certs.iter().map(|c| c.to_value(true)).collect(),
    )))
}

/// Options for chain verification (a subset of Go's `x509.VerifyOptions`).
struct VerifyOpts {
    dns_name: String,
    now: i64,
    key_usages: Vec<i64>,
}

fn not_verified() -> BuiltinResult {
    Ok(Some(Value::Array(vec![
        Value::Bool(false),
        Value::Array(Vec::new()),
    ])))
}

pub(super) fn parse_and_verify_certificates(args: &[Value], ctx: &Context) -> BuiltinResult {
    let input = str_arg(args, 1)?;
    let Ok(certs) = certs_from_string(input) else {
        return not_verified();
    };
    let opts = VerifyOpts {
        dns_name: String::new(),
        now: ctx.now_ns.div_euclid(1_000_000_000),
        key_usages: Vec::new(),
    };
    match verify_chain(&certs, &opts) {
        Some(chain) => Ok(Some(Value::Array(vec![
            Value::Bool(true),
            Value::Array(chain.iter().map(|c| c.to_value(true)).collect()),
        ]))),
        None => not_verified(),
    }
}

const KEY_USAGE_NAMES: [(&str, i64); 14] = [
    ("KeyUsageAny", 0),
    ("KeyUsageServerAuth", 1),
    ("KeyUsageClientAuth", 2),
    ("KeyUsageCodeSigning", 3),
    ("KeyUsageEmailProtection", 4),
    ("KeyUsageIPSECEndSystem", 5),
    ("KeyUsageIPSECTunnel", 6),
    ("KeyUsageIPSECUser", 7),
    ("KeyUsageTimeStamping", 8),
    ("KeyUsageOCSPSigning", 9),
    ("KeyUsageMicrosoftServerGatedCrypto", 10),
    ("KeyUsageNetscapeServerGatedCrypto", 11),
    ("KeyUsageMicrosoftCommercialCodeSigning", 12),
    ("KeyUsageMicrosoftKernelCodeSigning", 13),
];

fn verify_opts(options: &Object, ctx: &Context) -> Result<VerifyOpts, BuiltinError> {
    let mut o = VerifyOpts {
        dns_name: String::new(),
        now: ctx.now_ns.div_euclid(1_000_000_000),
        key_usages: Vec::new(),
    };
    for (k, v) in options {
        let Value::String(key) = k else { continue };
        match key.as_str() {
            "DNSName" => {
                o.dns_name = v
                    .as_str()
                    .ok_or_else(|| err("'DNSName' should be a string"))?
                    .trim_matches('"')
                    .to_owned();
            }
            "CurrentTime" => {
                let n = v
                    .as_number()
                    .ok_or_else(|| err("'CurrentTime' should be a number"))?;
                let ns = match n {
                    Number::Int(i) => *i,
                    _ => return Err(err("'CurrentTime' should be a valid int64 number")),
                };
                o.now = ns.div_euclid(1_000_000_000);
            }
            "MaxConstraintComparisons" => {
                let n = v
                    .as_number()
                    .ok_or_else(|| err("'MaxConstraintComparisons' should be a number"))?;
                if n.as_i64().is_none() {
                    return Err(err("'MaxConstraintComparisons' should be a valid number"));
                }
            }
            "KeyUsages" => {
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    Value::Set(s) => s.iter().collect(),
                    _ => return Err(err("'KeyUsages' should be an Array or Set")),
                };
                let mut invalid = Vec::new();
                for item in items {
                    let Some(name) = item.as_str() else { continue };
                    let name = name.trim_matches('"');
                    match KEY_USAGE_NAMES.iter().find(|(n, _)| *n == name) {
                        Some((_, code)) => o.key_usages.push(*code),
                        None => invalid.push(name.to_owned()),
                    }
                }
                if !invalid.is_empty() {
                    return Err(err(format!(
                        "invalid entries for 'KeyUsages' found: [{}]",
                        invalid.join(" ")
                    )));
                }
            }
            _ => return Err(err("invalid key option")),
        }
    }
    Ok(o)
}

pub(super) fn parse_and_verify_certificates_with_options(
    args: &[Value],
    ctx: &Context,
) -> BuiltinResult {
    let input = str_arg(args, 1)?;
    let opts_val = operand(args, 2)?;
    let Value::Object(options) = opts_val else {
        return Err(type_err(2, opts_val, "object"));
    };
    let Ok(certs) = certs_from_string(input) else {
        return not_verified();
    };
    let opts = verify_opts(options, ctx)?;
    match verify_chain(&certs, &opts) {
        Some(chain) => Ok(Some(Value::Array(vec![
            Value::Bool(true),
            Value::Array(chain.iter().map(|c| c.to_value(false)).collect()),
        ]))),
        None => not_verified(),
    }
}

/// Checks `child`'s signature with `parent`'s key. SHA-1 and MD5 signatures fail, as in Go.
fn signed_by(child: &Cert, parent: &Cert) -> bool {
    if (parent.version == 3 && !parent.bc_valid) || (parent.bc_valid && !parent.is_ca) {
        return false;
    }
    // keyCertSign is bit 5 of KeyUsage.
    if parent.key_usage != 0 && parent.key_usage & (1 << 5) == 0 {
        return false;
    }
    let Some(key) = &parent.key else { return false };
    let msg = &child.raw_tbs;
    let sig = &child.signature;
    use keys::HashAlg::{Sha256, Sha384, Sha512};
    match child.sig_alg {
        4 => keys::verify_rsa_pkcs1(key, Sha256, msg, sig),
        5 => keys::verify_rsa_pkcs1(key, Sha384, msg, sig),
        6 => keys::verify_rsa_pkcs1(key, Sha512, msg, sig),
        10..=12 => {
            let hash = match child.sig_alg {
                10 => Sha256,
                11 => Sha384,
                _ => Sha512,
            };
            ecdsa_der_verify(key, hash, msg, sig)
        }
        13 => keys::verify_rsa_pss(key, Sha256, msg, sig, Some(32)),
        14 => keys::verify_rsa_pss(key, Sha384, msg, sig, Some(48)),
        15 => keys::verify_rsa_pss(key, Sha512, msg, sig, Some(64)),
        16 => keys::verify_ed25519(key, msg, sig),
        _ => false,
    }
}

/// X.509 ECDSA signatures are DER `SEQUENCE { r INTEGER, s INTEGER }`.
fn ecdsa_der_verify(key: &PublicKey, hash: keys::HashAlg, msg: &[u8], sig: &[u8]) -> bool {
    let parsed = (|| {
        let seq = Der::new(sig).read_tag(der::SEQUENCE)?;
        let mut p = Der::new(seq.content);
        let r = p.read_tag(der::INTEGER)?;
        let s = p.read_tag(der::INTEGER)?;
        Some((r.content, s.content))
    })();
    match parsed {
        Some((r, s)) => keys::verify_ecdsa_rs(key, &hash.digest(msg), r, s),
        None => false,
    }
}

fn valid_at(c: &Cert, now: i64) -> bool {
    !c.unhandled_critical && now >= c.not_before && now <= c.not_after
}

/// Go's hostname matching: exact (case-insensitive) or a leftmost `*` label.
fn matches_host(c: &Cert, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        let want = match ip {
            std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
            std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        return c
            .ip_addresses
            .iter()
            .any(|b| *b == want || ip_text(b) == ip_text(&want));
    }
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    c.dns_names.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        let pattern = pattern.trim_end_matches('.');
        if pattern == host {
            return true;
        }
        let (Some(prest), Some((_, hrest))) = (pattern.strip_prefix("*."), host.split_once('.'))
        else {
            return false;
        };
        !prest.is_empty() && prest == hrest
    })
}

fn chain_allows_usage(chain: &[&Cert], wanted: &[i64]) -> bool {
    if wanted.contains(&0) {
        return true;
    }
    let mut remaining: Vec<i64> = if wanted.is_empty() {
        vec![1]
    } else {
        wanted.to_vec()
    };
    for c in chain.iter().rev() {
        if c.ext_key_usage.is_empty() && c.unknown_eku == 0 {
            continue;
        }
        if c.ext_key_usage.contains(&0) {
            continue;
        }
        remaining.retain(|u| c.ext_key_usage.contains(u));
        if remaining.is_empty() {
            return false;
        }
    }
    true
}

/// Upper bound on signature checks while building chains, as Go bounds its search.
const MAX_SIGNATURE_CHECKS: usize = 100;

/// `verifyX509CertificateChain`: the first certificate is the root, the last the leaf and
/// any in between intermediates. Returns the first valid chain, leaf first.
fn verify_chain<'a>(certs: &'a [Cert], opts: &VerifyOpts) -> Option<Vec<&'a Cert>> {
    if certs.len() < 2 {
        return None;
    }
    let root = certs.first()?;
    let leaf = certs.last()?;
    let intermediates: Vec<&Cert> = certs.get(1..certs.len() - 1)?.iter().collect();
    if !valid_at(leaf, opts.now) {
        return None;
    }
    if !opts.dns_name.is_empty() && !matches_host(leaf, &opts.dns_name) {
        return None;
    }
    let mut checks = 0usize;
    let mut found = Vec::new();
    if leaf.raw == root.raw {
        found.push(vec![leaf]);
    } else {
        build(
            vec![leaf],
            root,
            &intermediates,
            opts,
            &mut checks,
            &mut found,
        );
    }
    found.into_iter().find(|chain| {
        chain_allows_usage(chain, &opts.key_usages)
            && chain_names_allowed(chain)
            && policies_unconstrained(chain)
    })
}

/// Go's DNS constraint match: `example.com` covers itself and its subdomains, `.example.com`
/// only its subdomains (case-insensitive, whole labels).
fn dns_has_suffix(constraint: &str, name: &str) -> bool {
    let (c, n) = (constraint.to_ascii_lowercase(), name.to_ascii_lowercase());
    if c.len() > n.len() || !n.ends_with(&c) {
        return false;
    }
    c.starts_with('.')
        || n.len() == c.len()
        || n.as_bytes().get(n.len() - c.len() - 1) == Some(&b'.')
}

fn trim_first_label(s: &str) -> &str {
    s.split_once('.').map_or("", |(_, rest)| rest)
}

fn dns_query(list: &[String], name: &str, permitted: bool) -> bool {
    if list.iter().any(|c| c.is_empty() || dns_has_suffix(c, name)) {
        return true;
    }
    // An excluded name also rules out a wildcard that could stand for it.
    if !permitted && name.starts_with('*') {
        let trimmed = trim_first_label(name).to_ascii_lowercase();
        return !trimmed.is_empty()
            && list
                .iter()
                .any(|c| trim_first_label(&c.to_ascii_lowercase()) == trimmed);
    }
    false
}

fn ip_query(list: &[Vec<u8>], ip: &[u8]) -> bool {
    list.iter().any(|net| {
        let (base, mask) = net.split_at(net.len() / 2);
        base.len() == ip.len()
            && base
                .iter()
                .zip(mask)
                .zip(ip)
                .all(|((b, m), i)| b & m == i & m)
    })
}

fn email_query(list: &[String], email: &str, permitted: bool) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domains: Vec<String> = list.iter().filter(|c| !c.contains('@')).cloned().collect();
    list.iter().any(|c| {
        c.rsplit_once('@')
            .is_some_and(|(l, d)| l == local && d.eq_ignore_ascii_case(domain))
    }) || (!domains.is_empty() && dns_query(&domains, domain, permitted))
}

fn checks(
    permitted: &[impl Sized],
    excluded: &[impl Sized],
    in_permitted: bool,
    in_excluded: bool,
) -> bool {
    (permitted.is_empty() || in_permitted) && (excluded.is_empty() || !in_excluded)
}

/// Go's `checkChainConstraints`: each certificate's SANs against the name constraints of
/// every certificate above it.
fn chain_names_allowed(chain: &[&Cert]) -> bool {
    for (i, c) in chain.iter().enumerate() {
        if !c.has_san {
            continue;
        }
        for above in chain.iter().skip(i + 1) {
            let Some(nc) = &above.constraints else {
                continue;
            };
            for ip in &c.ip_addresses {
                if !checks(
                    &nc.permitted_ips,
                    &nc.excluded_ips,
                    ip_query(&nc.permitted_ips, ip),
                    ip_query(&nc.excluded_ips, ip),
                ) {
                    return false;
                }
            }
            for d in &c.dns_names {
                let ok = checks(
                    &nc.permitted_dns,
                    &nc.excluded_dns,
                    dns_query(&nc.permitted_dns, d, true),
                    dns_query(&nc.excluded_dns, d, false),
                );
                if !ok {
                    return false;
                }
            }
            for u in &c.uris {
                let host = uri_host(u);
                if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
                    return false;
                }
                let ok = checks(
                    &nc.permitted_uris,
                    &nc.excluded_uris,
                    dns_query(&nc.permitted_uris, &host, true),
                    dns_query(&nc.excluded_uris, &host, false),
                );
                if !ok {
                    return false;
                }
            }
            for e in &c.emails {
                let ok = checks(
                    &nc.permitted_emails,
                    &nc.excluded_emails,
                    email_query(&nc.permitted_emails, e, true),
                    email_query(&nc.excluded_emails, e, false),
                );
                if !ok {
                    return false;
                }
            }
        }
    }
    true
}

fn uri_host(u: &str) -> String {
    let after = u.split_once("//").map_or("", |(_, r)| r);
    let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host.to_owned()
}

/// Certificate-policy processing is not modelled. Without an explicit-policy requirement
/// Go accepts any chain; when one would take effect the host fails closed rather than
/// report a chain valid that OPA might reject.
fn policies_unconstrained(chain: &[&Cert]) -> bool {
    let below_root = chain.len().saturating_sub(1);
    chain
        .iter()
        .take(below_root)
        .rev()
        .enumerate()
        .all(|(k, c)| match c.require_explicit_policy {
            Some(v) => usize::try_from(v).is_ok_and(|v| v > below_root - 1 - k),
            None => true,
        })
}

fn build<'a>(
    chain: Vec<&'a Cert>,
    root: &'a Cert,
    intermediates: &[&'a Cert],
    opts: &VerifyOpts,
    checks: &mut usize,
    found: &mut Vec<Vec<&'a Cert>>,
) {
    let Some(&child) = chain.last() else { return };
    let candidates = std::iter::once((root, true)).chain(intermediates.iter().map(|c| (*c, false)));
    for (parent, is_root) in candidates {
        if parent.raw_subject != child.raw_issuer || chain.iter().any(|c| c.raw == parent.raw) {
            continue;
        }
        if *checks >= MAX_SIGNATURE_CHECKS {
            return;
        }
        *checks += 1;
        if !valid_at(parent, opts.now) || !signed_by(child, parent) {
            continue;
        }
        if !(is_root || parent.bc_valid && parent.is_ca) {
            continue;
        }
        let intermediates_below = i64::try_from(chain.len()).unwrap_or(i64::MAX) - 1;
        if parent.bc_valid && parent.max_path_len >= 0 && intermediates_below > parent.max_path_len
        {
            continue;
        }
        let mut next = chain.clone();
        next.push(parent);
        if is_root {
            found.push(next);
        } else if next.len() < 16 {
            build(next, root, intermediates, opts, checks, found);
        }
    }
}

/// `x509.CertificateRequest` as JSON.
pub(super) fn parse_certificate_request(args: &[Value], _: &Context) -> BuiltinResult {
    let input = str_arg(args, 1)?;
    let mut bytes = input.as_bytes().to_vec();
    if !input.starts_with("-----BEGIN CERTIFICATE REQUEST-----") {
        bytes = b64_std_decode(input.as_bytes())?;
    }
    if let Some((block, _)) = pem_decode(&bytes) {
        if block.typ != "CERTIFICATE REQUEST" {
            return Err(err("invalid PEM-encoded certificate signing request"));
        }
        bytes = block.bytes;
    }
    let bad = || err("asn1: structure error: tags don't match");
    let csr = Der::new(&bytes).read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let mut c = Der::new(csr.content);
    let info = c.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let sig_alg_tlv = c.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let sig =
        der::bit_string(c.read_tag(der::BIT_STRING).ok_or_else(bad)?.content).ok_or_else(bad)?;
    let mut i = Der::new(info.content);
    let version =
        der::int_i64(i.read_tag(der::INTEGER).ok_or_else(bad)?.content).ok_or_else(bad)?;
    let subject = i.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let spki = i.read_tag(der::SEQUENCE).ok_or_else(bad)?;
    let mut attributes = Vec::new();
    let mut ext = Extensions::default();
    if let Some(Some(attrs)) = i.optional(0xa0) {
        let mut a = Der::new(attrs.content);
        while !a.is_empty() {
            let attr = a.read_tag(der::SEQUENCE).ok_or_else(bad)?;
            let mut p = Der::new(attr.content);
            let arcs = arcs_of(&p.read().ok_or_else(bad)?)?;
            let values = p.read_tag(der::SET).ok_or_else(bad)?;
            if is(&arcs, "1.2.840.113549.1.9.14") {
                if let Some(seq) = Der::new(values.content).read_tag(der::SEQUENCE) {
                    ext = Extensions::parse(seq.content)?;
                }
            }
            if let Some(v) = attribute_values(values.content) {
                attributes.push(obj(vec![("Type", oid_json(&arcs)), ("Value", v)]));
            }
        }
    }
    let (pk_alg, pk_json, _) = public_key_json(spki.raw)?;
    Ok(Some(obj(vec![
        ("Raw", bytes_json(csr.raw)),
        ("RawTBSCertificateRequest", bytes_json(info.raw)),
        ("RawSubjectPublicKeyInfo", bytes_json(spki.raw)),
        ("RawSubject", bytes_json(subject.raw)),
        ("Version", int(version)),
        ("Signature", bytes_json(sig)),
        (
            "SignatureAlgorithm",
            int(signature_algorithm(&sig_alg_tlv)?),
        ),
        ("PublicKeyAlgorithm", int(pk_alg)),
        ("PublicKey", pk_json),
        ("Subject", parse_name(subject.raw)?),
        (
            "Attributes",
            if attributes.is_empty() {
                Value::Null
            } else {
                Value::Array(attributes)
            },
        ),
        (
            "Extensions",
            if ext.list.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.list)
            },
        ),
        ("ExtraExtensions", Value::Null),
        ("DNSNames", strings(&ext.dns)),
        ("EmailAddresses", strings(&ext.emails)),
        (
            "IPAddresses",
            if ext.ips.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.ips.iter().map(|b| Value::String(ip_text(b))).collect())
            },
        ),
        (
            "URIs",
            if ext.uris.is_empty() {
                Value::Null
            } else {
                Value::Array(ext.uris.iter().map(|u| url_json(u)).collect())
            },
        ),
    ])))
}

/// The deprecated `CertificateRequest.Attributes` view: a SET of SEQUENCEs of (OID, value)
/// pairs. Attributes of any other shape are left out, as Go's parser drops them.
fn attribute_values(set_content: &[u8]) -> Option<Value> {
    let mut outer = Der::new(set_content);
    let mut groups = Vec::new();
    while !outer.is_empty() {
        let seq = outer.read_tag(der::SEQUENCE)?;
        let mut inner = Der::new(seq.content);
        let mut pairs = Vec::new();
        while !inner.is_empty() {
            let atv = inner.read_tag(der::SEQUENCE)?;
            let mut p = Der::new(atv.content);
            let oid = der::oid_arcs(p.read_tag(der::OID)?.content)?;
            let v = p.read()?;
            let value = match v.tag {
                der::BOOLEAN => Value::Bool(v.content.first().is_some_and(|b| *b != 0)),
                der::OCTET_STRING => bytes_json(v.content),
                der::INTEGER => der::int_i64(v.content).map_or(Value::Null, int),
                _ => asn1_string(&v).map_or(Value::Null, Value::String),
            };
            pairs.push(obj(vec![("Type", oid_json(&oid)), ("Value", value)]));
        }
        groups.push(Value::Array(pairs));
    }
    Some(Value::Array(groups))
}

/// `getPrivateKeysFromPEMData`: every RSA, PKCS #8 and EC private key block, in order.
fn private_keys_from_pem(input: &str) -> Result<Vec<PrivateKey>, BuiltinError> {
    let owned;
    let mut data: &[u8] = input.as_bytes();
    if let Ok(decoded) = b64_std_decode(input.as_bytes()) {
        owned = decoded;
        data = &owned;
    }
    let mut keys_out = Vec::new();
    while !data.is_empty() {
        let Some((block, rest)) = pem_decode(data) else {
            break;
        };
        match block.typ.as_str() {
            "RSA PRIVATE KEY" => keys_out.push(PrivateKey::Rsa(
                keys::parse_pkcs1_private_key(&block.bytes).map_err(err)?,
            )),
            "PRIVATE KEY" => {
                keys_out.push(keys::parse_pkcs8_private_key(&block.bytes).map_err(err)?)
            }
            "EC PRIVATE KEY" => {
                keys_out.push(keys::parse_ec_private_key(&block.bytes).map_err(err)?)
            }
            _ => {}
        }
        data = data.get(rest..).unwrap_or_default();
    }
    Ok(keys_out)
}

fn scalar_json(bytes: &[u8]) -> Value {
    big_uint(&rsa::BigUint::from_bytes_be(bytes))
}

/// Go's `encoding/json` of `*rsa.PrivateKey`, `*ecdsa.PrivateKey` or `ed25519.PrivateKey`.
fn private_key_go_json(k: &PrivateKey) -> Value {
    match k {
        PrivateKey::Rsa(r) => {
            let primes: Vec<Value> = r.primes().iter().map(big_uint).collect();
            let pre = obj(vec![
                ("Dp", r.dp().map_or(Value::Null, big_uint)),
                ("Dq", r.dq().map_or(Value::Null, big_uint)),
                (
                    "Qinv",
                    r.qinv()
                        .and_then(|q| q.to_biguint())
                        .map_or(Value::Null, |q| big_uint(&q)),
                ),
                ("CRTValues", Value::Array(Vec::new())),
            ]);
            obj(vec![
                ("N", big_uint(r.n())),
                ("E", big_uint(r.e())),
                ("D", big_uint(r.d())),
                ("Primes", Value::Array(primes)),
                ("Precomputed", pre),
            ])
        }
        PrivateKey::P256(s) => ec_private_json(
            &s.verifying_key().to_encoded_point(false).to_bytes(),
            &s.to_bytes(),
        ),
        PrivateKey::P384(s) => ec_private_json(
            &s.verifying_key().to_encoded_point(false).to_bytes(),
            &s.to_bytes(),
        ),
        PrivateKey::P521(s) => {
            let vk = p521::ecdsa::VerifyingKey::from(s);
            ec_private_json(&vk.to_encoded_point(false).to_bytes(), &s.to_bytes())
        }
        PrivateKey::Ed25519(s) => bytes_json(&s.to_keypair_bytes()),
        PrivateKey::Secret(b) => bytes_json(b),
    }
}

fn ec_private_json(point: &[u8], d: &[u8]) -> Value {
    let Value::Object(mut o) = ec_point_json(point) else {
        return Value::Null;
    };
    o.insert(Value::str("D"), scalar_json(d));
    Value::Object(o)
}

pub(super) fn parse_private_keys(args: &[Value], _: &Context) -> BuiltinResult {
    let input = str_arg(args, 1)?;
    if input.is_empty() {
        return Ok(Some(Value::Null));
    }
    let found = private_keys_from_pem(input)?;
    Ok(Some(Value::Array(
        found.iter().map(private_key_go_json).collect(),
    )))
}

fn b64url(b: &[u8]) -> Value {
    Value::String(super::encode::b64url_encode_raw(b))
}

/// The first private key as a JWK, as `jwk.Import` renders it.
pub(super) fn parse_rsa_private_key(args: &[Value], _: &Context) -> BuiltinResult {
    let mut input = str_arg(args, 1)?.to_owned();
    if input.is_empty() {
        return Err(err("input PEM data was empty"));
    }
    if !input.starts_with("-----BEGIN") {
        let decoded = b64_std_decode(input.as_bytes())?;
        input = String::from_utf8_lossy(&decoded).into_owned();
    }
    let found = private_keys_from_pem(&input)?;
    let Some(key) = found.first() else {
        return Ok(Some(Value::Null));
    };
    Ok(Some(match key {
        PrivateKey::Rsa(r) => {
            let primes = r.primes();
            let p = primes
                .first()
                .map_or(Value::Null, |v| b64url(&v.to_bytes_be()));
            let q = primes
                .get(1)
                .map_or(Value::Null, |v| b64url(&v.to_bytes_be()));
            obj(vec![
                ("kty", Value::str("RSA")),
                ("n", b64url(&r.n().to_bytes_be())),
                ("e", b64url(&r.e().to_bytes_be())),
                ("d", b64url(&r.d().to_bytes_be())),
                ("p", p),
                ("q", q),
                (
                    "dp",
                    r.dp().map_or(Value::Null, |v| b64url(&v.to_bytes_be())),
                ),
                (
                    "dq",
                    r.dq().map_or(Value::Null, |v| b64url(&v.to_bytes_be())),
                ),
                (
                    "qi",
                    r.qinv()
                        .and_then(|v| v.to_biguint())
                        .map_or(Value::Null, |v| b64url(&v.to_bytes_be())),
                ),
            ])
        }
        PrivateKey::P256(s) => ec_jwk(
            "P-256",
            &s.verifying_key().to_encoded_point(false).to_bytes(),
            &s.to_bytes(),
        ),
        PrivateKey::P384(s) => ec_jwk(
            "P-384",
            &s.verifying_key().to_encoded_point(false).to_bytes(),
            &s.to_bytes(),
        ),
        PrivateKey::P521(s) => {
            let vk = p521::ecdsa::VerifyingKey::from(s);
            ec_jwk(
                "P-521",
                &vk.to_encoded_point(false).to_bytes(),
                &s.to_bytes(),
            )
        }
        PrivateKey::Ed25519(s) => obj(vec![
            ("kty", Value::str("OKP")),
            ("crv", Value::str("Ed25519")),
            ("x", b64url(s.verifying_key().as_bytes())),
            ("d", b64url(&s.to_bytes())),
        ]),
        PrivateKey::Secret(b) => obj(vec![("kty", Value::str("oct")), ("k", b64url(b))]),
    }))
}

fn ec_jwk(crv: &str, point: &[u8], d: &[u8]) -> Value {
    let coords = point.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    obj(vec![
        ("kty", Value::str("EC")),
        ("crv", Value::str(crv)),
        ("x", b64url(x)),
        ("y", b64url(y)),
        ("d", b64url(d)),
    ])
}

/// `tls.X509KeyPair`: the certificate chain and the private key matching its leaf.
pub(super) fn parse_keypair(args: &[Value], _: &Context) -> BuiltinResult {
    let cert_in = str_arg(args, 1)?;
    let key_in = str_arg(args, 2)?;
    let to_pem = |s: &str, typ: &str| -> Result<Vec<u8>, BuiltinError> {
        let mut b = s.as_bytes().to_vec();
        if !b.starts_with(b"-----BEGIN ") {
            b = b64_std_decode(s.as_bytes())?;
        }
        if !b.starts_with(b"-----BEGIN") {
            b = super::encode::pem_encode(typ, &b).into_bytes();
        }
        Ok(b)
    };
    let cert_pem = to_pem(cert_in, "CERTIFICATE")?;
    let key_pem = to_pem(key_in, "PRIVATE KEY")?;

    let mut ders = Vec::new();
    let mut data: &[u8] = &cert_pem;
    let mut skipped = Vec::new();
    while let Some((block, rest)) = pem_decode(data) {
        if block.typ == "CERTIFICATE" {
            ders.push(block.bytes);
        } else {
            skipped.push(block.typ);
        }
        data = data.get(rest..).unwrap_or_default();
    }
    if ders.is_empty() {
        return Err(err(if skipped.is_empty() {
            "tls: failed to find any PEM data in certificate input".to_owned()
        } else {
            format!(
                "tls: failed to find \"CERTIFICATE\" PEM block in certificate input after skipping PEM blocks of the following types: [{}]",
                skipped.join(" ")
            )
        }));
    }

    let mut key_der = None;
    let mut data: &[u8] = &key_pem;
    while let Some((block, rest)) = pem_decode(data) {
        if block.typ == "PRIVATE KEY" || block.typ.ends_with(" PRIVATE KEY") {
            key_der = Some(block);
            break;
        }
        data = data.get(rest..).unwrap_or_default();
    }
    let key_block = key_der.ok_or_else(|| err("tls: failed to find any PEM data in key input"))?;
    let key = keys::parse_pkcs1_private_key(&key_block.bytes)
        .map(PrivateKey::Rsa)
        .or_else(|_| keys::parse_pkcs8_private_key(&key_block.bytes))
        .or_else(|_| keys::parse_ec_private_key(&key_block.bytes))
        .map_err(|_| err("tls: failed to parse private key"))?;

    let leaf_der = ders
        .first()
        .ok_or_else(|| err("tls: failed to find any PEM data in certificate input"))?;
    let (leaf, _) = parse_certificate(leaf_der)?;
    let matches = match (&leaf.key, key.public()) {
        (Some(PublicKey::Rsa(a)), PublicKey::Rsa(b)) => a.n() == b.n() && a.e() == b.e(),
        (Some(PublicKey::P256(a)), PublicKey::P256(b)) => a == &b,
        (Some(PublicKey::P384(a)), PublicKey::P384(b)) => a == &b,
        (Some(PublicKey::P521(a)), PublicKey::P521(b)) => {
            a.to_encoded_point(false) == b.to_encoded_point(false)
        }
        (Some(PublicKey::Ed25519(a)), PublicKey::Ed25519(b)) => a == &b,
        (Some(PublicKey::Rsa(_)), _) => {
            return Err(err("tls: private key type does not match public key type"))
        }
        _ => return Err(err("tls: private key does not match public key")),
    };
    if !matches {
        return Err(err("tls: private key does not match public key"));
    }
    Ok(Some(obj(vec![
        (
            "Certificate",
            Value::Array(ders.iter().map(|d| bytes_json(d)).collect()),
        ),
        ("PrivateKey", private_key_go_json(&key)),
        ("SupportedSignatureAlgorithms", Value::Null),
        ("OCSPStaple", Value::Null),
        ("SignedCertificateTimestamps", Value::Null),
        ("Leaf", leaf.to_value(false)),
    ])))
}
