use super::*;
use crate::value::Value;

fn call(name: &str, args_text: &str) -> BuiltinResult {
    let Value::Array(args) = Value::parse_rego(args_text).unwrap() else {
        unreachable!()
    };
    lookup(name).unwrap()(
        &args,
        &Context {
            now_ns: 1_700_000_000_000_000_000,
        },
    )
}

fn ok(name: &str, args_text: &str) -> Value {
    call(name, args_text).unwrap().unwrap()
}

fn field<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |cur, k| match cur {
        Value::Object(o) => o.get(&Value::str(*k)).unwrap(),
        _ => panic!("not an object at {k}"),
    })
}

fn args(items: Vec<Value>) -> String {
    Value::Array(items).to_rego()
}

const HS_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwIiwiaXNzIjoib3BhIiwiZXh0Ijp7ImFiYyI6IjEyMyIsImNiYSI6WzEwLCIxMCJdfX0.IIxF-uJ6i4K5Dj71xNLnUeqB9jmujl6ujTInhii1PxE";

#[test]
fn jwt_decode_matches_opa() {
    let v = ok("io.jwt.decode", &args(vec![Value::str(HS_TOKEN)]));
    assert_eq!(
        v,
        Value::parse_rego(r#"[{"alg": "HS256", "typ": "JWT"}, {"ext": {"abc": "123", "cba": [10, "10"]}, "iss": "opa", "sub": "0"}, "208c45fae27a8b82b90e3ef5c4d2e751ea81f639ae8e5eae8d32278628b53f11"]"#).unwrap()
    );
    assert_eq!(
        call("io.jwt.decode", r#"["a.b"]"#).unwrap_err().0,
        "encoded JWT must have 3 sections, found 2"
    );
    assert_eq!(
        call("io.jwt.decode", r#"["ab"]"#).unwrap_err().0,
        "encoded JWT had no period separators"
    );
    assert!(call(
        "io.jwt.decode",
        r#"["eyJhbGciOiJIUzI1NiIsImVuYyI6IngifQ.e30.e30"]"#
    )
    .unwrap_err()
    .0
    .contains("JWE"));
    assert_eq!(
        ok(
            "io.jwt.verify_hs256",
            &args(vec![Value::str(HS_TOKEN), Value::str("wrong")])
        ),
        Value::Bool(false)
    );
}

const OCT_JWK: &str = r#"{"k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow", "kty": "oct"}"#;

#[test]
fn jwt_hs_signing_matches_opa() {
    let token = ok(
        "io.jwt.encode_sign",
        &format!(r#"[{{"alg": "HS256", "typ": "JWT"}}, {{}}, {OCT_JWK}]"#),
    );
    assert_eq!(
        token,
        Value::str(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.6cvao8lnOu6FAdK68jQFcDMXOmaWNwWiYhCgijd-AD8"
        )
    );
    let set_payload = ok(
        "io.jwt.encode_sign",
        &format!(
            r#"[{{"alg": "HS256", "typ": "JWT"}}, {{"aud": {{"bob", "saul"}}, "exp": 1300819380, "http://example.com/is_root": true, "iss": "joe", "privateParams": {{"private_one": "one", "private_two": "two"}}}}, {OCT_JWK}]"#
        ),
    );
    assert_eq!(set_payload, Value::str("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOlsiYm9iIiwic2F1bCJdLCJleHAiOjEzMDA4MTkzODAsImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlLCJpc3MiOiJqb2UiLCJwcml2YXRlUGFyYW1zIjp7InByaXZhdGVfb25lIjoib25lIiwicHJpdmF0ZV90d28iOiJ0d28ifX0.-Or2eol8bzly-Ztb0v7_7UkcKBkN_aNNpK33HK0MeOY"));
    assert_eq!(
        call(
            "io.jwt.encode_sign_raw",
            &args(vec![
                Value::str("{}"),
                Value::str("{}"),
                Value::str(OCT_JWK)
            ])
        )
        .unwrap_err()
        .0,
        "missing or invalid 'alg' header: jwsbb: header \"alg\" not found"
    );
    assert_eq!(
        call(
            "io.jwt.encode_sign_raw",
            &args(vec![
                Value::str(r#"{"alg":"HS256"}"#),
                Value::str("not json"),
                Value::str(OCT_JWK)
            ])
        )
        .unwrap_err()
        .0,
        "type is JWT but payload is not JSON"
    );
}

const RFC_A2_JWK: &str = r#"{"d": "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ", "dp": "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0", "dq": "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU", "e": "AQAB", "kty": "RSA", "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ", "p": "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc", "q": "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc", "qi": "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U"}"#;

#[test]
fn jwt_rs256_signing_is_deterministic_like_go() {
    let token = ok(
        "io.jwt.encode_sign",
        &format!(
            r#"[{{"alg": "RS256"}}, {{"aud": ["bob", "saul"], "exp": 1300819380, "http://example.com/is_root": true, "iss": "joe", "privateParams": {{"private_one": "one", "private_two": "two"}}}}, {RFC_A2_JWK}]"#
        ),
    );
    assert_eq!(token, Value::str("eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsiYm9iIiwic2F1bCJdLCJleHAiOjEzMDA4MTkzODAsImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlLCJpc3MiOiJqb2UiLCJwcml2YXRlUGFyYW1zIjp7InByaXZhdGVfb25lIjoib25lIiwicHJpdmF0ZV90d28iOiJ0d28ifX0.kvCjo2z80h4YO3umCn3iayUXEnBGgw-Nk4-cYNPWagW4SAg34nZSonUt9Kpnc5h0s6LpJAnam1xuEezk-2VRPnu05foQdWTDKJAze-9vZ0wr0L_KyXLZaW0vVfehdGpPgJj_FqVfgnc-hXdL0RADfrKjApsrO7oHpv-Ii3u7oKwauzq5oQ2AXt4cp6ahu8VhOBGQiPXtV98Yw3U3NBetMX-I_qR6-UGsN6Z0pRO0bsdk1ANvMiHT6Y04x8nh4kzk5pfv71ACgnxrs1zxwg7YfYzm2tQXGceu7fwI9sqO_jz2c8RvMsg4u8q0js58F-gR1SVjmTyipnXv0tAGzpZnhg"));
    let Value::Object(mut public) = Value::parse_rego(RFC_A2_JWK).unwrap() else {
        unreachable!()
    };
    for k in ["d", "p", "q", "dp", "dq", "qi"] {
        public.remove(&Value::str(k));
    }
    let public_json = Value::str(Value::Object(public).to_json_string());
    let pair = args(vec![token.clone(), public_json.clone()]);
    assert_eq!(ok("io.jwt.verify_rs256", &pair), Value::Bool(true));
    assert_eq!(ok("io.jwt.verify_ps256", &pair), Value::Bool(false));
    let with_time = |ns: i64| {
        let mut c = std::collections::BTreeMap::new();
        c.insert(Value::str("cert"), public_json.clone());
        c.insert(Value::str("time"), Value::int(ns));
        // The token names an audience, so decode_verify needs one to accept it.
        c.insert(Value::str("aud"), Value::str("saul"));
        args(vec![token.clone(), Value::Object(c)])
    };
    let Value::Array(parts) = ok(
        "io.jwt.decode_verify",
        &with_time(1_300_819_379_000_000_000),
    ) else {
        unreachable!()
    };
    assert_eq!(parts.first(), Some(&Value::Bool(true)));
    assert_eq!(
        ok(
            "io.jwt.decode_verify",
            &with_time(1_300_819_380_000_000_000)
        ),
        Value::parse_rego("[false, {}, {}]").unwrap()
    );
}

#[test]
fn jwt_signing_round_trips_for_ec_and_eddsa() {
    let p256 = r#"{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
    let ed = r#"{"kty": "OKP", "crv": "Ed25519", "x": "wEZFfoAj1rFKTLOOmjJjVZlCHwksuvMb2I5y_hg70E8", "d": "9XI34uQzYUJfWhDZf_0nYsLMBRVu8a6dFsy60P8uugk"}"#;
    for (alg, jwk, verifier) in [
        ("ES256", p256, "io.jwt.verify_es256"),
        ("EdDSA", ed, "io.jwt.verify_eddsa"),
    ] {
        let token = ok(
            "io.jwt.encode_sign",
            &format!(r#"[{{"alg": "{alg}"}}, {{"a": 1}}, {jwk}]"#),
        );
        // A private JWK is the wrong key type for the per-algorithm verifiers, as in OPA.
        assert_eq!(
            ok(verifier, &args(vec![token.clone(), Value::str(jwk)])),
            Value::Bool(false),
            "{alg}"
        );
        let Value::Object(mut public) = Value::parse_rego(jwk).unwrap() else {
            unreachable!()
        };
        public.remove(&Value::str("d"));
        let public_json = Value::str(Value::Object(public).to_json_string());
        assert_eq!(
            ok(verifier, &args(vec![token.clone(), public_json])),
            Value::Bool(true),
            "{alg}"
        );
        let mut c = std::collections::BTreeMap::new();
        c.insert(Value::str("cert"), Value::str(jwk));
        let Value::Array(parts) = ok("io.jwt.decode_verify", &args(vec![token, Value::Object(c)]))
        else {
            unreachable!()
        };
        assert_eq!(parts.first(), Some(&Value::Bool(true)), "{alg}");
    }
}

#[test]
fn jwt_decode_verify_checks_constraints() {
    let token = ok(
        "io.jwt.encode_sign_raw",
        &args(vec![
            Value::str(r#"{"alg":"HS256","typ":"JWT"}"#),
            Value::str(r#"{"iss":"opa","aud":"x"}"#),
            Value::str(r#"{"kty":"oct","k":"c2VjcmV0"}"#),
        ]),
    );
    let check = |c: &str| {
        call(
            "io.jwt.decode_verify",
            &args(vec![token.clone(), Value::parse_rego(c).unwrap()]),
        )
    };
    assert_eq!(
        check(r#"{"secret": "secret", "iss": "opa", "aud": "x"}"#)
            .unwrap()
            .unwrap(),
        Value::parse_rego(r#"[true, {"alg": "HS256", "typ": "JWT"}, {"aud": "x", "iss": "opa"}]"#)
            .unwrap()
    );
    let rejected = Some(Value::parse_rego("[false, {}, {}]").unwrap());
    assert_eq!(
        check(r#"{"secret": "secret"}"#).unwrap(),
        rejected,
        "aud present but not required"
    );
    assert_eq!(
        check(r#"{"secret": "secret", "aud": "x", "iss": "other"}"#).unwrap(),
        rejected
    );
    assert_eq!(
        check(r#"{"secret": "wrong", "aud": "x"}"#).unwrap(),
        rejected
    );
    assert_eq!(
        check(r#"{"secret": "secret", "aud": "x", "alg": "RS256"}"#).unwrap(),
        rejected
    );
    assert_eq!(check("{}").unwrap_err().0, "no key constraint");
    assert_eq!(
        check(r#"{"secret": "s", "bogus": 1}"#).unwrap_err().0,
        "unknown token validation constraint: bogus"
    );
}

const GOOGLE_CERT: &str = "MIIDujCCAqKgAwIBAgIIE31FZVaPXTUwDQYJKoZIhvcNAQEFBQAwSTELMAkGA1UEBhMCVVMxEzARBgNVBAoTCkdvb2dsZSBJbmMxJTAjBgNVBAMTHEdvb2dsZSBJbnRlcm5ldCBBdXRob3JpdHkgRzIwHhcNMTQwMTI5MTMyNzQzWhcNMTQwNTI5MDAwMDAwWjBpMQswCQYDVQQGEwJVUzETMBEGA1UECAwKQ2FsaWZvcm5pYTEWMBQGA1UEBwwNTW91bnRhaW4gVmlldzETMBEGA1UECgwKR29vZ2xlIEluYzEYMBYGA1UEAwwPbWFpbC5nb29nbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEfRrObuSW5T7q5CnSEqefEmtH4CCv6+5EckuriNr1CjfVvqzwfAhopXkLrq45EQm8vkmf7W96XJhC7ZM0dYi1/qOCAU8wggFLMB0GA1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAaBgNVHREEEzARgg9tYWlsLmdvb2dsZS5jb20wCwYDVR0PBAQDAgeAMGgGCCsGAQUFBwEBBFwwWjArBggrBgEFBQcwAoYfaHR0cDovL3BraS5nb29nbGUuY29tL0dJQUcyLmNydDArBggrBgEFBQcwAYYfaHR0cDovL2NsaWVudHMxLmdvb2dsZS5jb20vb2NzcDAdBgNVHQ4EFgQUiJxtimAuTfwb+aUtBn5UYKreKvMwDAYDVR0TAQH/BAIwADAfBgNVHSMEGDAWgBRK3QYWG7z2aLV29YG2u2IaulqBLzAXBgNVHSAEEDAOMAwGCisGAQQB1nkCBQEwMAYDVR0fBCkwJzAloCOgIYYfaHR0cDovL3BraS5nb29nbGUuY29tL0dJQUcyLmNybDANBgkqhkiG9w0BAQUFAAOCAQEAH6RYHxHdcGpMpFE3oxDoFnP+gtuBCHan2yE2GRbJ2Cw8Lw0MmuKqHlf9RSeYfd3BXeKkj1qO6TVKwCh+0HdZk283TZZyzmEOyclm3UGFYe82P/iDFt+CeQ3NpmBg+GoaVCuWAARJN/KfglbLyyYygcQq0SgeDh8dRKUiaW3HQSoYvTvdTuqzwK4CXsr3b5/dAOY8uMuG/IAR3FgwTbZ1dtoWRvOTa8hYiU6A475WuZKyEHcwnGYe57u2I2KbMgcKjPniocj4QzgYsVAVKW3IwaOhyE+vPxsiUkvQHdO2fojCkY8jg70jxM+gu59tPDNbw3Uh/2Ij310FgTHsnGQMyA==";

#[test]
fn x509_certificate_json_has_go_fields() {
    let Value::Array(certs) = ok(
        "crypto.x509.parse_certificates",
        &args(vec![Value::str(GOOGLE_CERT)]),
    ) else {
        unreachable!()
    };
    let c = certs.first().unwrap();
    assert_eq!(
        field(c, &["Subject", "CommonName"]),
        &Value::str("mail.google.com")
    );
    assert_eq!(
        field(c, &["Issuer", "Organization"]),
        &Value::parse_rego(r#"["Google Inc"]"#).unwrap()
    );
    assert_eq!(
        field(c, &["DNSNames"]),
        &Value::parse_rego(r#"["mail.google.com"]"#).unwrap()
    );
    assert_eq!(field(c, &["NotAfter"]), &Value::str("2014-05-29T00:00:00Z"));
    assert_eq!(
        field(c, &["SerialNumber"]),
        &Value::int(1_404_354_960_355_712_309)
    );
    assert_eq!(
        field(c, &["ExtKeyUsage"]),
        &Value::parse_rego("[1, 2]").unwrap()
    );
    assert_eq!(field(c, &["MaxPathLen"]), &Value::int(-1));
    assert_eq!(field(c, &["SignatureAlgorithm"]), &Value::int(3));
    assert_eq!(field(c, &["PublicKeyAlgorithm"]), &Value::int(3));
    assert_eq!(
        field(c, &["Policies"]),
        &Value::parse_rego(r#"["1.3.6.1.4.1.11129.2.5.1"]"#).unwrap()
    );
    assert_eq!(field(c, &["URIStrings"]), &Value::Null);
    assert!(call("crypto.x509.parse_certificates", r#"["YmFkc3RyaW5n"]"#).is_err());
    // One certificate cannot form a chain; an unparsable input is simply unverified.
    let unverified = Value::parse_rego("[false, []]").unwrap();
    assert_eq!(
        ok(
            "crypto.x509.parse_and_verify_certificates",
            &args(vec![Value::str(GOOGLE_CERT)])
        ),
        unverified
    );
    assert_eq!(
        ok("crypto.x509.parse_and_verify_certificates", r#"["nope"]"#),
        unverified
    );
}

#[test]
fn private_keys_parse_or_report_nothing() {
    assert_eq!(ok("crypto.parse_private_keys", r#"[""]"#), Value::Null);
    assert_eq!(
        ok("crypto.parse_private_keys", r#"["nope"]"#),
        Value::Array(vec![])
    );
    assert!(call("crypto.x509.parse_rsa_private_key", r#"["invalid"]"#)
        .unwrap_err()
        .0
        .contains("illegal base64"));
}
