//! Keys as OPA's token builtins accept them (PEM certificates, PEM public keys, JWK and JWK
//! sets) and the signature schemes of JWS, with Go's acceptance rules.

use hmac::Hmac;
use p256::elliptic_curve;
use rsa::pkcs8::spki;
use rsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::traits::PublicKeyParts;
use rsa::{pkcs1, pkcs8, signature};
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;
use spki::der::Decode;

use super::encode::{b64url_decode_raw, parse_json, pem_decode};
use super::{err, BuiltinError};
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub(super) fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => sha2::Sha256::digest(msg).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(msg).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(msg).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn pkcs1(self) -> Pkcs1v15Sign {
        match self {
            HashAlg::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
            HashAlg::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
            HashAlg::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
        }
    }

    pub(super) fn hmac(self, key: &[u8], msg: &[u8]) -> Result<Vec<u8>, BuiltinError> {
        match self {
            HashAlg::Sha256 => super::hmac_bytes::<Hmac<sha2::Sha256>>(key, msg),
            HashAlg::Sha384 => super::hmac_bytes::<Hmac<sha2::Sha384>>(key, msg),
            HashAlg::Sha512 => super::hmac_bytes::<Hmac<sha2::Sha512>>(key, msg),
        }
    }
}

/// The JWS algorithms OPA knows (`tokenAlgorithms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JwsAlg {
    Hs(HashAlg),
    Rs(HashAlg),
    Ps(HashAlg),
    Es(HashAlg),
    EdDsa,
}

impl JwsAlg {
    pub(super) fn parse(name: &str) -> Option<JwsAlg> {
        use HashAlg::*;
        Some(match name {
            "HS256" => JwsAlg::Hs(Sha256),
            "HS384" => JwsAlg::Hs(Sha384),
            "HS512" => JwsAlg::Hs(Sha512),
            "RS256" => JwsAlg::Rs(Sha256),
            "RS384" => JwsAlg::Rs(Sha384),
            "RS512" => JwsAlg::Rs(Sha512),
            "PS256" => JwsAlg::Ps(Sha256),
            "PS384" => JwsAlg::Ps(Sha384),
            "PS512" => JwsAlg::Ps(Sha512),
            "ES256" => JwsAlg::Es(Sha256),
            "ES384" => JwsAlg::Es(Sha384),
            "ES512" => JwsAlg::Es(Sha512),
            "EdDSA" => JwsAlg::EdDsa,
            _ => return None,
        })
    }
}

#[derive(Clone)]
pub(super) enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A JWK `oct` key.
    Secret(Vec<u8>),
    /// Parsed, but of a kind no JWS algorithm here verifies with (DSA, X25519, ...).
    Other,
}

#[derive(Clone)]
pub(super) enum PrivateKey {
    Rsa(RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Secret(Vec<u8>),
}

impl PrivateKey {
    pub(super) fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::P521(k) => PublicKey::P521(p521::ecdsa::VerifyingKey::from(k)),
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            PrivateKey::Secret(k) => PublicKey::Secret(k.clone()),
        }
    }
}

/// One key a token may be verified with; `alg` and `kid` come from a JWK.
#[derive(Clone)]
pub(super) struct VerificationKey {
    pub alg: String,
    pub kid: String,
    pub key: PublicKey,
    /// Go hands a JWK private key to the verifiers as a private key, which the per-algorithm
    /// builtins reject as the wrong type while `decode_verify` derives the public half.
    pub from_private: bool,
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_KNOWN_OTHER: [&str; 3] = ["1.2.840.10040.4.1", "1.3.101.110", "1.2.840.10045.3.1.1"];

fn big(bytes: &[u8]) -> BigUint {
    BigUint::from_bytes_be(bytes)
}

const MAX_RSA_BITS: usize = 16_384;

fn rsa_public(n: &[u8], e: &[u8]) -> Result<RsaPublicKey, String> {
    let n = big(n);
    let e = big(e);
    if n.bits() == 0 || e.bits() == 0 {
        return Err("invalid RSA public key".into());
    }
    // Bounds as in Go's crypto/rsa; they also keep a hostile key from making every
    // verification an enormous modular exponentiation.
    if n.bits() > MAX_RSA_BITS {
        return Err(format!(
            "crypto/rsa: {}-bit keys are not supported",
            n.bits()
        ));
    }
    if e.bits() > 31 {
        return Err("crypto/rsa: public exponent too large".into());
    }
    Ok(RsaPublicKey::new_unchecked(n, e))
}

/// `x509.ParsePKIXPublicKey`.
pub(super) fn parse_pkix_public_key(der: &[u8]) -> Result<PublicKey, String> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| e.to_string())?;
    let oid = spki.algorithm.oid.to_string();
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or("x509: invalid public key bit string")?;
    match oid.as_str() {
        OID_RSA => {
            let k = pkcs1::RsaPublicKey::from_der(bits)
                .map_err(|e| format!("x509: invalid RSA public key: {e}"))?;
            Ok(PublicKey::Rsa(rsa_public(
                k.modulus.as_bytes(),
                k.public_exponent.as_bytes(),
            )?))
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters_oid()
                .map_err(|_| "x509: failed to parse ECDSA parameters as named curve".to_string())?
                .to_string();
            ec_public_from_sec1(&curve, bits)
        }
        OID_ED25519 => {
            let arr: [u8; 32] = bits
                .try_into()
                .map_err(|_| "x509: wrong Ed25519 public key size")?;
            Ok(ed25519_dalek::VerifyingKey::from_bytes(&arr)
                .map_or(PublicKey::Other, PublicKey::Ed25519))
        }
        o if OID_KNOWN_OTHER.contains(&o) => Ok(PublicKey::Other),
        _ => Err("x509: unknown public key algorithm".into()),
    }
}

fn ec_public_from_sec1(curve_oid: &str, point: &[u8]) -> Result<PublicKey, String> {
    let bad = |_| "x509: failed to unmarshal elliptic curve point".to_string();
    match curve_oid {
        OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(PublicKey::P256)
            .map_err(bad),
        OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(PublicKey::P384)
            .map_err(bad),
        OID_P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(point)
            .map(PublicKey::P521)
            .map_err(bad),
        _ => Err("x509: unsupported elliptic curve".into()),
    }
}

/// `x509.ParsePKCS1PrivateKey`.
pub(super) fn parse_pkcs1_private_key(der: &[u8]) -> Result<RsaPrivateKey, String> {
    let k = pkcs1::RsaPrivateKey::from_der(der)
        .map_err(|e| format!("x509: failed to parse private key (use ParsePKCS8PrivateKey instead for this key format): {e}"))?;
    if k.other_prime_infos.is_some() {
        return Err("x509: unsupported multi-prime RSA private key".into());
    }
    RsaPrivateKey::from_components(
        big(k.modulus.as_bytes()),
        big(k.public_exponent.as_bytes()),
        big(k.private_exponent.as_bytes()),
        vec![big(k.prime1.as_bytes()), big(k.prime2.as_bytes())],
    )
    .map_err(|e| format!("crypto/rsa: invalid key: {e}"))
}

/// `x509.ParsePKCS8PrivateKey`.
pub(super) fn parse_pkcs8_private_key(der: &[u8]) -> Result<PrivateKey, String> {
    let info = pkcs8::PrivateKeyInfo::from_der(der)
        .map_err(|e| format!("x509: failed to parse private key: {e}"))?;
    let oid = info.algorithm.oid.to_string();
    match oid.as_str() {
        OID_RSA => parse_pkcs1_private_key(info.private_key).map(PrivateKey::Rsa),
        OID_EC => {
            use pkcs8::DecodePrivateKey;
            let bad = |e: pkcs8::Error| {
                format!("x509: failed to parse EC private key embedded in PKCS#8: {e}")
            };
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|o| o.to_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => p256::SecretKey::from_pkcs8_der(der)
                    .map(|k| PrivateKey::P256(k.into()))
                    .map_err(bad),
                OID_P384 => p384::SecretKey::from_pkcs8_der(der)
                    .map(|k| PrivateKey::P384(k.into()))
                    .map_err(bad),
                OID_P521 => {
                    let k = p521::SecretKey::from_pkcs8_der(der).map_err(bad)?;
                    Ok(PrivateKey::P521(ecdsa_core_key(&k)?))
                }
                _ => Err("x509: unknown elliptic curve".into()),
            }
        }
        OID_ED25519 => {
            use pkcs8::DecodePrivateKey;
            ed25519_dalek::SigningKey::from_pkcs8_der(der)
                .map(PrivateKey::Ed25519)
                .map_err(|e| format!("x509: invalid Ed25519 private key: {e}"))
        }
        _ => Err(format!(
            "x509: PKCS#8 wrapping contained private key with unknown algorithm: {oid}"
        )),
    }
}

/// `x509.ParseECPrivateKey`: a SEC 1 structure naming its curve.
pub(super) fn parse_ec_private_key(der: &[u8]) -> Result<PrivateKey, String> {
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P256(k.into()));
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P384(k.into()));
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P521(ecdsa_core_key(&k)?));
    }
    Err("x509: failed to parse EC private key".into())
}

fn ecdsa_core_key(k: &p521::SecretKey) -> Result<p521::ecdsa::SigningKey, String> {
    p521::ecdsa::SigningKey::from_bytes(&k.to_bytes()).map_err(|e| e.to_string())
}

/// One key from a JWK or JWK set.
pub(super) struct Jwk {
    pub alg: String,
    pub kid: String,
    pub public: PublicKey,
    pub private: Option<PrivateKey>,
}

fn member<'a>(o: &'a std::collections::BTreeMap<Value, Value>, name: &str) -> Option<&'a Value> {
    o.get(&Value::str(name))
}

fn str_member(
    o: &std::collections::BTreeMap<Value, Value>,
    name: &str,
) -> Result<Option<String>, String> {
    match member(o, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("failed to parse field {name}: expected string")),
    }
}

fn bytes_member(
    o: &std::collections::BTreeMap<Value, Value>,
    name: &str,
) -> Result<Option<Vec<u8>>, String> {
    match str_member(o, name)? {
        None => Ok(None),
        Some(s) => b64url_decode_raw(&s)
            .map(Some)
            .ok_or_else(|| format!("failed to decode field {name}: invalid base64")),
    }
}

fn required(
    o: &std::collections::BTreeMap<Value, Value>,
    name: &str,
    kty: &str,
) -> Result<Vec<u8>, String> {
    bytes_member(o, name)?.ok_or_else(|| format!("required field {name} is missing for {kty} key"))
}

fn parse_one_jwk(v: &Value) -> Result<Jwk, String> {
    let Value::Object(o) = v else {
        return Err("failed to parse key: expected a JSON object".into());
    };
    let kty = str_member(o, "kty")?.ok_or("invalid key: missing \"kty\" field")?;
    let alg = str_member(o, "alg")?.unwrap_or_default();
    let kid = str_member(o, "kid")?.unwrap_or_default();
    let (public, private) = match kty.as_str() {
        "RSA" => {
            let n = required(o, "n", "RSA")?;
            let e = required(o, "e", "RSA")?;
            let public = rsa_public(&n, &e)?;
            let private = match bytes_member(o, "d")? {
                None => None,
                Some(d) => {
                    let mut primes = Vec::new();
                    if let (Some(p), Some(q)) = (bytes_member(o, "p")?, bytes_member(o, "q")?) {
                        primes = vec![big(&p), big(&q)];
                    }
                    let k = RsaPrivateKey::from_components(big(&n), big(&e), big(&d), primes)
                        .map_err(|e| format!("failed to create RSA private key: {e}"))?;
                    Some(PrivateKey::Rsa(k))
                }
            };
            (PublicKey::Rsa(public), private)
        }
        "EC" => {
            let crv = str_member(o, "crv")?.ok_or("required field crv is missing for EC key")?;
            let x = required(o, "x", "EC")?;
            let y = required(o, "y", "EC")?;
            let d = bytes_member(o, "d")?;
            ec_jwk(&crv, &x, &y, d.as_deref())?
        }
        "OKP" => {
            let crv = str_member(o, "crv")?.ok_or("required field crv is missing for OKP key")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported curve for OKP key: {crv}"));
            }
            let x = required(o, "x", "OKP")?;
            let arr: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| "invalid Ed25519 public key size")?;
            let public = ed25519_dalek::VerifyingKey::from_bytes(&arr)
                .map_or(PublicKey::Other, PublicKey::Ed25519);
            let private = match bytes_member(o, "d")? {
                None => None,
                Some(d) => {
                    let seed: [u8; 32] = d
                        .as_slice()
                        .try_into()
                        .map_err(|_| "invalid Ed25519 private key size")?;
                    Some(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                        &seed,
                    )))
                }
            };
            (public, private)
        }
        "oct" => {
            let k = required(o, "k", "oct")?;
            (PublicKey::Secret(k.clone()), Some(PrivateKey::Secret(k)))
        }
        other => return Err(format!("invalid key type from JSON ({other})")),
    };
    Ok(Jwk {
        alg,
        kid,
        public,
        private,
    })
}

fn ec_jwk(
    crv: &str,
    x: &[u8],
    y: &[u8],
    d: Option<&[u8]>,
) -> Result<(PublicKey, Option<PrivateKey>), String> {
    fn point<C>(x: &[u8], y: &[u8]) -> Result<elliptic_curve::sec1::EncodedPoint<C>, String>
    where
        C: elliptic_curve::Curve,
        elliptic_curve::FieldBytesSize<C>: elliptic_curve::sec1::ModulusSize,
    {
        let size = C::FieldBytesSize::USIZE;
        if x.len() > size || y.len() > size {
            return Err("invalid EC key: coordinate too long".into());
        }
        let mut xb = vec![0u8; size - x.len()];
        xb.extend_from_slice(x);
        let mut yb = vec![0u8; size - y.len()];
        yb.extend_from_slice(y);
        let xa = elliptic_curve::FieldBytes::<C>::from_exact_iter(xb).ok_or("invalid EC key")?;
        let ya = elliptic_curve::FieldBytes::<C>::from_exact_iter(yb).ok_or("invalid EC key")?;
        Ok(elliptic_curve::sec1::EncodedPoint::<C>::from_affine_coordinates(&xa, &ya, false))
    }
    use elliptic_curve::generic_array::typenum::Unsigned;
    let bad_point = |_| "failed to create EC public key: point not on curve".to_string();
    let bad_d = |_| "failed to create EC private key".to_string();
    match crv {
        "P-256" => {
            let public =
                p256::ecdsa::VerifyingKey::from_encoded_point(&point::<p256::NistP256>(x, y)?)
                    .map_err(bad_point)?;
            let private = d
                .map(|d| {
                    p256::ecdsa::SigningKey::from_slice(d)
                        .map(PrivateKey::P256)
                        .map_err(bad_d)
                })
                .transpose()?;
            Ok((PublicKey::P256(public), private))
        }
        "P-384" => {
            let public =
                p384::ecdsa::VerifyingKey::from_encoded_point(&point::<p384::NistP384>(x, y)?)
                    .map_err(bad_point)?;
            let private = d
                .map(|d| {
                    p384::ecdsa::SigningKey::from_slice(d)
                        .map(PrivateKey::P384)
                        .map_err(bad_d)
                })
                .transpose()?;
            Ok((PublicKey::P384(public), private))
        }
        "P-521" => {
            let public =
                p521::ecdsa::VerifyingKey::from_encoded_point(&point::<p521::NistP521>(x, y)?)
                    .map_err(bad_point)?;
            let private = d
                .map(|d| {
                    p521::ecdsa::SigningKey::from_slice(d)
                        .map(PrivateKey::P521)
                        .map_err(bad_d)
                })
                .transpose()?;
            Ok((PublicKey::P521(public), private))
        }
        other => Err(format!("unsupported curve: {other}")),
    }
}

/// `jwk.Parse`: a single JWK object or a `{"keys": [...]}` set.
pub(super) fn parse_jwks(text: &[u8]) -> Result<Vec<Jwk>, String> {
    let v =
        parse_json(text).map_err(|e| format!("failed to unmarshal JSON into key set: {}", e.0))?;
    let Value::Object(o) = &v else {
        return Err("failed to unmarshal JSON into key set: expected an object".into());
    };
    match member(o, "keys") {
        Some(Value::Array(keys)) => keys.iter().map(parse_one_jwk).collect(),
        Some(_) => Err("failed to parse key set: \"keys\" must be an array".into()),
        None => Ok(vec![parse_one_jwk(&v)?]),
    }
}

/// `parseKeysFromCertOrJWK`: a PEM certificate or public key (nothing may follow the block),
/// otherwise a JWK or JWK set. JWKs whose `alg` OPA does not know are skipped.
pub(super) fn keys_from_cert_or_jwk(text: &str) -> Result<Vec<VerificationKey>, BuiltinError> {
    let data = text.as_bytes();
    if let Some((block, rest)) = pem_decode(data) {
        if rest < data.len() {
            return Err(err("extra data after a PEM certificate block"));
        }
        let key = match block.typ.as_str() {
            "CERTIFICATE" => {
                let spki = super::x509::certificate_spki(&block.bytes)
                    .map_err(|e| err(format!("failed to parse a PEM certificate: {e}")))?;
                parse_pkix_public_key(&spki)
                    .map_err(|e| err(format!("failed to parse a PEM certificate: {e}")))?
            }
            "PUBLIC KEY" => parse_pkix_public_key(&block.bytes)
                .map_err(|e| err(format!("failed to parse a PEM public key: {e}")))?,
            _ => return Err(err("failed to extract a Key from the PEM certificate")),
        };
        return Ok(vec![VerificationKey {
            alg: String::new(),
            kid: String::new(),
            key,
            from_private: false,
        }]);
    }
    let jwks =
        parse_jwks(data).map_err(|e| err(format!("failed to parse a JWK key (set): {e}")))?;
    Ok(jwks
        .into_iter()
        .filter(|k| k.alg.is_empty() || JwsAlg::parse(&k.alg).is_some())
        .map(|k| VerificationKey {
            from_private: k.private.is_some() && !matches!(k.public, PublicKey::Secret(_)),
            alg: k.alg,
            kid: k.kid,
            key: k.public,
        })
        .collect())
}

/// Strips leading zeros and left-pads to `size`; `None` if the integer does not fit.
fn fixed_width(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let trimmed = bytes.get(start..)?;
    if trimmed.len() > size {
        return None;
    }
    let mut out = vec![0u8; size - trimmed.len()];
    out.extend_from_slice(trimmed);
    Some(out)
}

pub(super) fn verify_ecdsa_rs(key: &PublicKey, digest: &[u8], r: &[u8], s: &[u8]) -> bool {
    let Some(size) = ec_size(key) else {
        return false;
    };
    let (Some(mut rs), Some(sb)) = (fixed_width(r, size), fixed_width(s, size)) else {
        return false;
    };
    rs.extend_from_slice(&sb);
    match key {
        PublicKey::P256(k) => p256::ecdsa::Signature::from_slice(&rs)
            .is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
        PublicKey::P384(k) => p384::ecdsa::Signature::from_slice(&rs)
            .is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
        PublicKey::P521(k) => p521::ecdsa::Signature::from_slice(&rs)
            .is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok()),
        _ => false,
    }
}

fn ec_size(key: &PublicKey) -> Option<usize> {
    match key {
        PublicKey::P256(_) => Some(32),
        PublicKey::P384(_) => Some(48),
        PublicKey::P521(_) => Some(66),
        _ => None,
    }
}

/// `io.jwt.verify_es*`: the signature is split in half whatever its length, as OPA does.
pub(super) fn verify_ecdsa_halves(key: &PublicKey, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
    let n = sig.len() / 2;
    let (r, s) = sig.split_at(n);
    verify_ecdsa_rs(key, &hash.digest(msg), r, s)
}

/// JWS verification as `decode_verify` does it: the signature must be exactly r || s at
/// the curve's width.
fn verify_ecdsa_fixed(key: &PublicKey, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
    let Some(size) = ec_size(key) else {
        return false;
    };
    if sig.len() != size * 2 {
        return false;
    }
    let (r, s) = sig.split_at(size);
    verify_ecdsa_rs(key, &hash.digest(msg), r, s)
}

pub(super) fn verify_rsa_pkcs1(key: &PublicKey, hash: HashAlg, msg: &[u8], sig: &[u8]) -> bool {
    let PublicKey::Rsa(k) = key else { return false };
    k.verify(hash.pkcs1(), &hash.digest(msg), sig).is_ok()
}

fn mgf1(hash: HashAlg, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut block = seed.to_vec();
        block.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&hash.digest(&block));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// RSASSA-PSS verification (RFC 8017 §9.1.2). `salt_len` of `None` detects the salt length
/// from the encoded message, as Go's `rsa.VerifyPSS` does when given no options.
pub(super) fn verify_rsa_pss(
    key: &PublicKey,
    hash: HashAlg,
    msg: &[u8],
    sig: &[u8],
    salt_len: Option<usize>,
) -> bool {
    let PublicKey::Rsa(k) = key else { return false };
    pss_check(k, hash, &hash.digest(msg), sig, salt_len).unwrap_or(false)
}

fn pss_check(
    k: &RsaPublicKey,
    hash: HashAlg,
    m_hash: &[u8],
    sig: &[u8],
    salt_len: Option<usize>,
) -> Option<bool> {
    let n = k.n();
    let k_len = n.bits().div_ceil(8);
    if sig.len() != k_len {
        return Some(false);
    }
    let s = BigUint::from_bytes_be(sig);
    if &s >= n {
        return Some(false);
    }
    let m = s.modpow(k.e(), n);
    let em_bits = n.bits().checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    let raw = m.to_bytes_be();
    if raw.len() > em_len {
        return Some(false);
    }
    let mut em = vec![0u8; em_len - raw.len()];
    em.extend_from_slice(&raw);
    let h_len = hash.len();
    if em_len < h_len + salt_len.unwrap_or(0) + 2 || em.last() != Some(&0xbc) {
        return Some(false);
    }
    let db_len = em_len - h_len - 1;
    let masked_db = em.get(..db_len)?;
    let h = em.get(db_len..db_len + h_len)?;
    let unused_bits = 8 * em_len - em_bits;
    let top_mask: u8 = if unused_bits == 0 {
        0
    } else {
        0xffu8 << (8 - unused_bits)
    };
    if masked_db.first().copied().unwrap_or(0) & top_mask != 0 {
        return Some(false);
    }
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1(hash, h, db_len))
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= !top_mask;
    }
    let sep = match salt_len {
        Some(sl) => {
            let ps_len = db_len.checked_sub(sl + 1)?;
            if db.get(..ps_len)?.iter().any(|b| *b != 0) || db.get(ps_len) != Some(&1) {
                return Some(false);
            }
            ps_len
        }
        None => {
            let pos = db.iter().position(|b| *b != 0)?;
            if db.get(pos) != Some(&1) {
                return Some(false);
            }
            pos
        }
    };
    let salt = db.get(sep + 1..)?;
    let mut m_prime = vec![0u8; 8];
    m_prime.extend_from_slice(m_hash);
    m_prime.extend_from_slice(salt);
    Some(super::ct_eq(&hash.digest(&m_prime), h))
}

pub(super) fn verify_ed25519(key: &PublicKey, msg: &[u8], sig: &[u8]) -> bool {
    let PublicKey::Ed25519(k) = key else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
        return false;
    };
    use ed25519_dalek::Verifier;
    k.verify(msg, &sig).is_ok()
}

/// `jwsbb.Verify`: the header's algorithm picks the scheme, and the key must suit it.
pub(super) fn jws_verify(key: &PublicKey, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let Some(alg) = JwsAlg::parse(alg) else {
        return false;
    };
    match alg {
        JwsAlg::Hs(h) => match key {
            PublicKey::Secret(k) if !k.is_empty() => {
                h.hmac(k, msg).is_ok_and(|mac| super::ct_eq(&mac, sig))
            }
            _ => false,
        },
        JwsAlg::Rs(h) => verify_rsa_pkcs1(key, h, msg, sig),
        JwsAlg::Ps(h) => verify_rsa_pss(key, h, msg, sig, Some(h.len())),
        JwsAlg::Es(h) => verify_ecdsa_fixed(key, h, msg, sig),
        JwsAlg::EdDsa => verify_ed25519(key, msg, sig),
    }
}

/// `jwsbb.Sign`.
pub(super) fn jws_sign(key: &PrivateKey, alg: JwsAlg, msg: &[u8]) -> Result<Vec<u8>, String> {
    let mismatch = || Err(format!("key type is not suitable for {alg:?}"));
    match (alg, key) {
        (JwsAlg::Hs(h), PrivateKey::Secret(k)) => {
            if k.is_empty() {
                return Err("missing key while signing payload".into());
            }
            h.hmac(k, msg).map_err(|e| e.0)
        }
        (JwsAlg::Rs(h), PrivateKey::Rsa(k)) => {
            k.sign(h.pkcs1(), &h.digest(msg)).map_err(|e| e.to_string())
        }
        (JwsAlg::Ps(h), PrivateKey::Rsa(k)) => {
            let padding = match h {
                HashAlg::Sha256 => rsa::Pss::new::<sha2::Sha256>(),
                HashAlg::Sha384 => rsa::Pss::new::<sha2::Sha384>(),
                HashAlg::Sha512 => rsa::Pss::new::<sha2::Sha512>(),
            };
            k.sign_with_rng(&mut rand_core::OsRng, padding, &h.digest(msg))
                .map_err(|e| e.to_string())
        }
        (JwsAlg::Es(h), k) => {
            let digest = h.digest(msg);
            let sig: Result<Vec<u8>, signature::Error> = match k {
                PrivateKey::P256(k) => {
                    PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(k, &digest)
                        .map(|s| s.to_bytes().to_vec())
                }
                PrivateKey::P384(k) => {
                    PrehashSigner::<p384::ecdsa::Signature>::sign_prehash(k, &digest)
                        .map(|s| s.to_bytes().to_vec())
                }
                PrivateKey::P521(k) => {
                    PrehashSigner::<p521::ecdsa::Signature>::sign_prehash(k, &digest)
                        .map(|s| s.to_bytes().to_vec())
                }
                _ => return mismatch(),
            };
            sig.map_err(|e| e.to_string())
        }
        (JwsAlg::EdDsa, PrivateKey::Ed25519(k)) => {
            use ed25519_dalek::Signer;
            Ok(k.sign(msg).to_bytes().to_vec())
        }
        _ => mismatch(),
    }
}
