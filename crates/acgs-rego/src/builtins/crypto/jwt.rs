//! io.jwt.*: decoding, per-algorithm verification, `decode_verify` and signing, following
//! OPA's token code step by step so that the same tokens fail for the same reasons.

use std::collections::{BTreeMap, BTreeSet};

use super::encode::{b64url_decode, b64url_encode_raw, go_json, parse_json_object};
use super::keys::{self, HashAlg, JwsAlg, PublicKey, VerificationKey};
use super::{err, operand, str_arg, type_err, BuiltinError};
use crate::builtins::{BuiltinResult, Context};
use crate::value::{Number, Value};

type Object = BTreeMap<Value, Value>;

/// The three base64url sections of a compact JWS.
struct Token<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl Token<'_> {
    fn signing_input(&self) -> Vec<u8> {
        format!("{}.{}", self.header, self.payload).into_bytes()
    }

    fn decode_header(&self) -> Result<Object, BuiltinError> {
        let raw = b64url_decode(self.header)
            .map_err(|e| err(format!("JWT header had invalid encoding: {}", e.0)))?;
        let header =
            parse_json_object(&raw).map_err(|e| err(format!("bad JWT header: {}", e.0)))?;
        if header.contains_key(&Value::str("enc")) {
            return Err(err("JWT is a JWE object, which is not supported"));
        }
        Ok(header)
    }

    fn decode_payload(&self) -> Result<Vec<u8>, BuiltinError> {
        b64url_decode(self.payload)
            .map_err(|e| err(format!("JWT payload had invalid encoding: {}", e.0)))
    }

    fn decode_signature(&self) -> Result<Vec<u8>, BuiltinError> {
        b64url_decode(self.signature)
    }
}

fn split_token(v: &Value) -> Result<Token<'_>, BuiltinError> {
    let text = v.as_str().ok_or_else(|| type_err(1, v, "string"))?;
    if !text.contains('.') {
        return Err(err("encoded JWT had no period separators"));
    }
    let parts: Vec<&str> = text.split('.').collect();
    match parts.as_slice() {
        [header, payload, signature] => Ok(Token {
            header,
            payload,
            signature,
        }),
        _ => Err(err(format!(
            "encoded JWT must have 3 sections, found {}",
            parts.len()
        ))),
    }
}

/// The JOSE header fields OPA interprets.
#[derive(Default)]
struct Header {
    alg: String,
    kid: String,
    cty: String,
    crit: BTreeSet<String>,
    unknown: Vec<String>,
}

impl Header {
    fn parse(obj: &Object) -> Result<Header, BuiltinError> {
        let mut h = Header::default();
        for (k, v) in obj {
            let name = match k {
                Value::String(s) => s.as_str(),
                _ => continue,
            };
            let slot = match name {
                "alg" => &mut h.alg,
                "kid" => &mut h.kid,
                "cty" => &mut h.cty,
                "typ" => {
                    if v.as_str().is_none() {
                        return Err(err("typ: must be a string"));
                    }
                    continue;
                }
                "crit" => {
                    let Value::Array(items) = v else {
                        return Err(err("crit: must be a list"));
                    };
                    // OPA stops at the first non-string entry without reporting it.
                    for item in items {
                        match item {
                            Value::String(s) => {
                                h.crit.insert(s.clone());
                            }
                            _ => break,
                        }
                    }
                    if h.crit.is_empty() {
                        return Err(err("crit: must be a nonempty list"));
                    }
                    continue;
                }
                other => {
                    h.unknown.push(other.to_owned());
                    continue;
                }
            };
            *slot = v
                .as_str()
                .ok_or_else(|| err(format!("{name}: must be a string")))?
                .to_owned();
        }
        Ok(h)
    }

    /// RFC 7515: `alg` is required and every critical parameter must be understood.
    fn valid(&self) -> bool {
        !self.alg.is_empty() && !self.unknown.iter().any(|u| self.crit.contains(u))
    }
}

pub(super) fn decode(args: &[Value], _: &Context) -> BuiltinResult {
    decode_token(operand(args, 1)?)
}

fn decode_token(jwt: &Value) -> BuiltinResult {
    let token = split_token(jwt)?;
    let header = token.decode_header()?;
    let payload = token.decode_payload()?;
    if header.get(&Value::str("cty")).and_then(Value::as_str) == Some("JWT") {
        // A nested token arrives quoted, as jwt.io produces it.
        let inner = String::from_utf8_lossy(&payload);
        let inner = inner.trim_matches(|c| c == '"' || c == '\'');
        return decode_token(&Value::str(inner));
    }
    let payload = parse_json_object(&payload)?;
    let sig = token
        .decode_signature()
        .map_err(|e| err(format!("JWT signature had invalid encoding: {}", e.0)))?;
    Ok(Some(Value::Array(vec![
        Value::Object(header),
        Value::Object(payload),
        Value::String(hex::encode(sig)),
    ])))
}

fn verify_hs(args: &[Value], hash: HashAlg) -> BuiltinResult {
    str_arg(args, 1)?;
    let secret = str_arg(args, 2)?;
    let token = split_token(operand(args, 1)?)?;
    let mac = hash.hmac(secret.as_bytes(), &token.signing_input())?;
    let sig = token.decode_signature()?;
    Ok(Some(Value::Bool(super::ct_eq(&sig, &mac))))
}

pub(super) fn verify_hs256(args: &[Value], _: &Context) -> BuiltinResult {
    verify_hs(args, HashAlg::Sha256)
}

pub(super) fn verify_hs384(args: &[Value], _: &Context) -> BuiltinResult {
    verify_hs(args, HashAlg::Sha384)
}

pub(super) fn verify_hs512(args: &[Value], _: &Context) -> BuiltinResult {
    verify_hs(args, HashAlg::Sha512)
}

/// `builtinJWTVerify`: a key whose `kid` matches the header's decides alone; otherwise any key
/// without an `alg`, or with the header's `alg`, may verify the token.
fn verify_with_keys(args: &[Value], check: fn(&PublicKey, &[u8], &[u8]) -> bool) -> BuiltinResult {
    let token = split_token(operand(args, 1)?)?;
    let keys = keys::keys_from_cert_or_jwk(str_arg(args, 2)?)?;
    let sig = token.decode_signature()?;
    let header = Header::parse(&token.decode_header()?)?;
    let input = token.signing_input();
    let try_key = |k: &VerificationKey| !k.from_private && check(&k.key, &input, &sig);
    if !header.kid.is_empty() {
        if let Some(k) = keys.iter().find(|k| k.kid == header.kid) {
            return Ok(Some(Value::Bool(try_key(k))));
        }
    }
    let ok = keys
        .iter()
        .filter(|k| k.alg.is_empty() || k.alg == header.alg)
        .any(try_key);
    Ok(Some(Value::Bool(ok)))
}

macro_rules! verifier {
    ($name:ident, $check:expr) => {
        pub(super) fn $name(args: &[Value], _: &Context) -> BuiltinResult {
            verify_with_keys(args, $check)
        }
    };
}

verifier!(verify_rs256, |k, m, s| keys::verify_rsa_pkcs1(
    k,
    HashAlg::Sha256,
    m,
    s
));
verifier!(verify_rs384, |k, m, s| keys::verify_rsa_pkcs1(
    k,
    HashAlg::Sha384,
    m,
    s
));
verifier!(verify_rs512, |k, m, s| keys::verify_rsa_pkcs1(
    k,
    HashAlg::Sha512,
    m,
    s
));
verifier!(verify_ps256, |k, m, s| keys::verify_rsa_pss(
    k,
    HashAlg::Sha256,
    m,
    s,
    None
));
verifier!(verify_ps384, |k, m, s| keys::verify_rsa_pss(
    k,
    HashAlg::Sha384,
    m,
    s,
    None
));
verifier!(verify_ps512, |k, m, s| keys::verify_rsa_pss(
    k,
    HashAlg::Sha512,
    m,
    s,
    None
));
verifier!(verify_es256, |k, m, s| keys::verify_ecdsa_halves(
    k,
    HashAlg::Sha256,
    m,
    s
));
verifier!(verify_es384, |k, m, s| keys::verify_ecdsa_halves(
    k,
    HashAlg::Sha384,
    m,
    s
));
verifier!(verify_es512, |k, m, s| keys::verify_ecdsa_halves(
    k,
    HashAlg::Sha512,
    m,
    s
));
verifier!(verify_eddsa, keys::verify_ed25519);

/// The second argument of `io.jwt.decode_verify`.
struct Constraints {
    keys: Option<Vec<VerificationKey>>,
    secret: String,
    alg: String,
    iss: String,
    aud: String,
    /// Nanoseconds since the epoch.
    time: f64,
}

fn time_from_value(v: &Value) -> Result<f64, BuiltinError> {
    let n = v
        .as_number()
        .ok_or_else(|| err("token time constraint: must be a number"))?;
    let t = n.as_f64();
    if t.is_nan() {
        return Err(err("token time constraint: unvalid float64"));
    }
    if t < 0.0 {
        return Err(err("token time constraint: must not be negative"));
    }
    Ok(t)
}

impl Constraints {
    fn parse(obj: &Object, ctx: &Context) -> Result<Constraints, BuiltinError> {
        let mut c = Constraints {
            keys: None,
            secret: String::new(),
            alg: String::new(),
            iss: String::new(),
            aud: String::new(),
            time: -1.0,
        };
        for (k, v) in obj {
            let name = match k {
                Value::String(s) => s.clone(),
                other => other.to_rego(),
            };
            let text = || {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| err(format!("{name} constraint: must be a string")))
            };
            match name.as_str() {
                "cert" => c.keys = Some(keys::keys_from_cert_or_jwk(&text()?)?),
                "secret" => c.secret = text()?,
                "alg" => c.alg = text()?,
                "iss" => c.iss = text()?,
                "aud" => c.aud = text()?,
                "time" => c.time = time_from_value(v)?,
                _ => return Err(err(format!("unknown token validation constraint: {name}"))),
            }
        }
        if c.time < 0.0 {
            #[allow(clippy::cast_precision_loss)] // OPA holds the clock as a float here too
            let now = ctx.now_ns as f64;
            c.time = time_from_value(&Value::float(now))?;
        }
        let key_kinds = usize::from(c.keys.is_some()) + usize::from(!c.secret.is_empty());
        if key_kinds > 1 {
            return Err(err("duplicate key constraints"));
        }
        if key_kinds < 1 {
            return Err(err("no key constraint"));
        }
        Ok(c)
    }

    fn verify(&self, header: &Header, input: &[u8], sig: &[u8]) -> bool {
        if let Some(keys) = &self.keys {
            if !header.kid.is_empty() {
                if let Some(k) = keys.iter().find(|k| k.kid == header.kid) {
                    return keys::jws_verify(&k.key, &header.alg, input, sig);
                }
            }
            return keys
                .iter()
                .filter(|k| k.alg.is_empty() || k.alg == header.alg)
                .any(|k| keys::jws_verify(&k.key, &header.alg, input, sig));
        }
        let secret = PublicKey::Secret(self.secret.clone().into_bytes());
        keys::jws_verify(&secret, &header.alg, input, sig)
    }

    fn valid_audience(&self, aud: &Value) -> bool {
        match aud {
            Value::String(s) => *s == self.aud,
            Value::Array(items) => items.iter().any(|v| v.as_str() == Some(self.aud.as_str())),
            _ => false,
        }
    }
}

fn unverified() -> BuiltinResult {
    Ok(Some(Value::Array(vec![
        Value::Bool(false),
        Value::Object(Object::new()),
        Value::Object(Object::new()),
    ])))
}

pub(super) fn decode_verify(args: &[Value], ctx: &Context) -> BuiltinResult {
    let jwt = operand(args, 1)?;
    let constraints_arg = operand(args, 2)?;
    let Value::Object(constraints_obj) = constraints_arg else {
        return Err(type_err(2, constraints_arg, "object"));
    };
    let c = Constraints::parse(constraints_obj, ctx)?;

    let mut current = jwt.clone();
    let (header, payload) = loop {
        let token = split_token(&current)?;
        let header_obj = token.decode_header()?;
        let header = Header::parse(&header_obj)?;
        if !header.valid() {
            return unverified();
        }
        if !c.alg.is_empty() && c.alg != header.alg {
            return unverified();
        }
        let sig = token.decode_signature()?;
        if !c.verify(&header, &token.signing_input(), &sig) {
            return unverified();
        }
        let payload = token.decode_payload()?;
        if header.cty.eq_ignore_ascii_case("JWT") {
            current = Value::String(String::from_utf8_lossy(&payload).into_owned());
            continue;
        }
        break (header_obj, parse_json_object(&payload)?);
    };

    if !c.iss.is_empty() {
        match payload.get(&Value::str("iss")) {
            Some(Value::String(iss)) if *iss == c.iss => {}
            _ => return unverified(),
        }
    }
    match payload.get(&Value::str("aud")) {
        Some(aud) if !c.valid_audience(aud) => return unverified(),
        Some(_) => {}
        None if !c.aud.is_empty() => return unverified(),
        None => {}
    }
    let now_s = Number::Float(c.time / 1_000_000_000.0);
    if let Some(exp) = payload.get(&Value::str("exp")) {
        let Value::Number(exp) = exp else {
            return Err(err("exp value must be a number"));
        };
        if now_s >= *exp {
            return unverified();
        }
    }
    if let Some(nbf) = payload.get(&Value::str("nbf")) {
        let Value::Number(nbf) = nbf else {
            return Err(err("nbf value must be a number"));
        };
        if now_s < *nbf {
            return unverified();
        }
    }
    Ok(Some(Value::Array(vec![
        Value::Bool(true),
        Value::Object(header),
        Value::Object(payload),
    ])))
}

/// Reads a header member the way the JWS library does (a raw JSON parse of the header text).
fn header_string(header: &serde_json::Value, name: &str) -> Result<String, String> {
    match header.get(name) {
        None => Err(format!("jwsbb: header \"{name}\" not found")),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "value doesn't contain string; it contains {}",
            json_kind(other)
        )),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn encode_sign_common(headers: &[u8], payload: &[u8], jwk: &[u8]) -> BuiltinResult {
    let jwks = keys::parse_jwks(jwk).map_err(err)?;
    let key = jwks
        .first()
        .ok_or_else(|| err("no keys found in JWK set"))?;

    let parsed: Result<serde_json::Value, String> =
        serde_json::from_slice(headers).map_err(|e| format!("cannot parse JSON: {e}"));
    let alg = parsed
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|h| header_string(h, "alg"))
        .map_err(|e| err(format!("missing or invalid 'alg' header: {e}")))?;
    let alg_kind =
        JwsAlg::parse(&alg).ok_or_else(|| err(format!("unknown JWS algorithm: {alg}")))?;
    let typ = parsed
        .as_ref()
        .ok()
        .and_then(|h| header_string(h, "typ").ok());
    let payload_is_json = serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok();
    if typ.as_deref().is_none_or(|t| t == "JWT") && !payload_is_json {
        return Err(err("type is JWT but payload is not JSON"));
    }

    let mut out = b64url_encode_raw(headers);
    out.push('.');
    out.push_str(&b64url_encode_raw(payload));
    let private = key.private.as_ref().ok_or_else(|| {
        err(format!(
            "failed to sign payload: a private key is required for {alg}"
        ))
    })?;
    let sig = keys::jws_sign(private, alg_kind, out.as_bytes())
        .map_err(|e| err(format!("failed to sign payload: {e}")))?;
    out.push('.');
    out.push_str(&b64url_encode_raw(&sig));
    Ok(Some(Value::String(out)))
}

pub(super) fn encode_sign(args: &[Value], _: &Context) -> BuiltinResult {
    let headers = go_json(operand(args, 1)?);
    let payload = go_json(operand(args, 2)?);
    let jwk = go_json(operand(args, 3)?);
    encode_sign_common(headers.as_bytes(), payload.as_bytes(), jwk.as_bytes())
}

pub(super) fn encode_sign_raw(args: &[Value], _: &Context) -> BuiltinResult {
    let jwk = str_arg(args, 3)?;
    let headers = str_arg(args, 1)?;
    let payload = str_arg(args, 2)?;
    encode_sign_common(headers.as_bytes(), payload.as_bytes(), jwk.as_bytes())
}
