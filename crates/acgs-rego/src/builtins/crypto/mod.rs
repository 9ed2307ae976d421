//! Host builtins: crypto.* (digests, HMAC, X.509, private keys) and io.jwt.*.
//!
//! Text formats follow Go's standard library where OPA leans on it (PEM framing, base64
//! leniency, `encoding/json` output), because policies compare these strings byte for byte.

use hmac::{Hmac, Mac};
use sha2::Digest;

use super::{BuiltinError, BuiltinFn, BuiltinResult, Context};
use crate::value::Value;

mod der;
mod encode;
pub(super) use encode::go_json;
mod jwt;
mod keys;
mod x509;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    let f: BuiltinFn = match name {
        "crypto.md5" => md5,
        "crypto.sha1" => sha1,
        "crypto.sha256" => sha256,
        "crypto.hmac.md5" => hmac_md5,
        "crypto.hmac.sha1" => hmac_sha1,
        "crypto.hmac.sha256" => hmac_sha256,
        "crypto.hmac.sha512" => hmac_sha512,
        "crypto.hmac.equal" => hmac_equal,
        "crypto.x509.parse_certificates" => x509::parse_certificates,
        "crypto.x509.parse_and_verify_certificates" => x509::parse_and_verify_certificates,
        "crypto.x509.parse_and_verify_certificates_with_options" => {
            x509::parse_and_verify_certificates_with_options
        }
        "crypto.x509.parse_certificate_request" => x509::parse_certificate_request,
        "crypto.x509.parse_keypair" => x509::parse_keypair,
        "crypto.x509.parse_rsa_private_key" => x509::parse_rsa_private_key,
        "crypto.parse_private_keys" => x509::parse_private_keys,
        "io.jwt.decode" => jwt::decode,
        "io.jwt.decode_verify" => jwt::decode_verify,
        "io.jwt.encode_sign" => jwt::encode_sign,
        "io.jwt.encode_sign_raw" => jwt::encode_sign_raw,
        "io.jwt.verify_hs256" => jwt::verify_hs256,
        "io.jwt.verify_hs384" => jwt::verify_hs384,
        "io.jwt.verify_hs512" => jwt::verify_hs512,
        "io.jwt.verify_rs256" => jwt::verify_rs256,
        "io.jwt.verify_rs384" => jwt::verify_rs384,
        "io.jwt.verify_rs512" => jwt::verify_rs512,
        "io.jwt.verify_ps256" => jwt::verify_ps256,
        "io.jwt.verify_ps384" => jwt::verify_ps384,
        "io.jwt.verify_ps512" => jwt::verify_ps512,
        "io.jwt.verify_es256" => jwt::verify_es256,
        "io.jwt.verify_es384" => jwt::verify_es384,
        "io.jwt.verify_es512" => jwt::verify_es512,
        "io.jwt.verify_eddsa" => jwt::verify_eddsa,
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

/// The string operand at 1-based `pos`, with OPA's type error otherwise.
fn str_arg(args: &[Value], pos: usize) -> Result<&str, BuiltinError> {
    let v = operand(args, pos)?;
    v.as_str().ok_or_else(|| type_err(pos, v, "string"))
}

fn type_err(pos: usize, got: &Value, want: &str) -> BuiltinError {
    err(format!(
        "operand {pos} must be {want} but got {}",
        got.type_name()
    ))
}

fn hex_str(bytes: &[u8]) -> BuiltinResult {
    Ok(Some(Value::String(hex::encode(bytes))))
}

fn md5(args: &[Value], _: &Context) -> BuiltinResult {
    hex_str(&md5::Md5::digest(str_arg(args, 1)?.as_bytes()))
}

fn sha1(args: &[Value], _: &Context) -> BuiltinResult {
    hex_str(&sha1::Sha1::digest(str_arg(args, 1)?.as_bytes()))
}

fn sha256(args: &[Value], _: &Context) -> BuiltinResult {
    hex_str(&sha2::Sha256::digest(str_arg(args, 1)?.as_bytes()))
}

/// HMAC accepts keys of any length, so `new_from_slice` cannot fail; the error arm exists only
/// to satisfy the type.
fn hmac_bytes<M: Mac + hmac::digest::KeyInit>(
    key: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>, BuiltinError> {
    let mut mac = <M as Mac>::new_from_slice(key).map_err(|e| err(e.to_string()))?;
    mac.update(msg);
    Ok(mac.finalize().into_bytes().to_vec())
}

fn hmac_builtin<M: Mac + hmac::digest::KeyInit>(args: &[Value]) -> BuiltinResult {
    let msg = str_arg(args, 1)?;
    let key = str_arg(args, 2)?;
    hex_str(&hmac_bytes::<M>(key.as_bytes(), msg.as_bytes())?)
}

fn hmac_md5(args: &[Value], _: &Context) -> BuiltinResult {
    hmac_builtin::<Hmac<md5::Md5>>(args)
}

fn hmac_sha1(args: &[Value], _: &Context) -> BuiltinResult {
    hmac_builtin::<Hmac<sha1::Sha1>>(args)
}

fn hmac_sha256(args: &[Value], _: &Context) -> BuiltinResult {
    hmac_builtin::<Hmac<sha2::Sha256>>(args)
}

fn hmac_sha512(args: &[Value], _: &Context) -> BuiltinResult {
    hmac_builtin::<Hmac<sha2::Sha512>>(args)
}

/// Constant-time so that a policy comparing a presented MAC with an expected one does not
/// leak how many leading bytes matched.
fn hmac_equal(args: &[Value], _: &Context) -> BuiltinResult {
    let a = str_arg(args, 1)?;
    let b = str_arg(args, 2)?;
    Ok(Some(Value::Bool(ct_eq(a.as_bytes(), b.as_bytes()))))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> BuiltinResult {
        let f = lookup(name).unwrap();
        f(args, &Context { now_ns: 0 })
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn digests_match_opa() {
        assert_eq!(
            call("crypto.md5", &[s("lorem ipsum")]).unwrap(),
            Some(s("80a751fde577028640c419000e33eba6"))
        );
        assert_eq!(
            call("crypto.sha1", &[s("lorem ipsum")]).unwrap(),
            Some(s("bfb7759a67daeb65410490b4d98bb9da7d1ea2ce"))
        );
        assert_eq!(
            call("crypto.sha256", &[s("lorem ipsum")]).unwrap(),
            Some(s(
                "5e2bf57d3f40c4b6df69daf1936cb766f832374b4fc0259a7cbff06e2f70f269"
            ))
        );
        assert_eq!(
            call("crypto.md5", &[Value::int(1)]).unwrap_err().0,
            "operand 1 must be string but got number"
        );
    }

    #[test]
    fn hmacs_match_opa() {
        let cases = [
            ("crypto.hmac.md5", "31b6db9e5eb4addb42f1a6ca07367adc"),
            ("crypto.hmac.sha1", "85d155c55ed286a300bd1cf124de08d87e914f3a"),
            (
                "crypto.hmac.sha256",
                "147933218aaabc0b8b10a2b3a5c34684c8d94341bcf10a4736dc7270f7741851",
            ),
            (
                "crypto.hmac.sha512",
                "24257d7210582a65c731ec55159c8184cc24c02489453e58587f71f44c23a2d61b4b72154a89d17b2d49448a8452ea066f4fc56a2bcead45c088572ffccdb3d8",
            ),
        ];
        for (name, want) in cases {
            assert_eq!(
                call(name, &[s("foo"), s("bar")]).unwrap(),
                Some(s(want)),
                "{name}"
            );
        }
        assert_eq!(
            call("crypto.hmac.sha512", &[s("åäöçß\u{1F972}♙Ω"), s("秘密の")]).unwrap(),
            Some(s("192f5afded233d6e21427aa26ed267ac118cfa2971013d91cbed530c0b208d78138b83dfe1d6cc3553d7bd518f22a481402c723028e1279d1ffbe8f11ea6b125"))
        );
        assert_eq!(
            call("crypto.hmac.sha256", &[s("foo"), Value::Null])
                .unwrap_err()
                .0,
            "operand 2 must be string but got null"
        );
    }

    #[test]
    fn hmac_equal_is_exact() {
        let a = s("31b6db9e5eb4addb42f1a6ca07367adc");
        assert_eq!(
            call("crypto.hmac.equal", &[a.clone(), a.clone()]).unwrap(),
            Some(Value::Bool(true))
        );
        assert_eq!(
            call("crypto.hmac.equal", &[a, s("31b6db9e5eb4addb")]).unwrap(),
            Some(Value::Bool(false))
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
#[path = "tests.rs"]
mod jwt_x509_tests;
