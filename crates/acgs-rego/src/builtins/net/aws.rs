//! `providers.aws.sign_req`: AWS Signature Version 4 over an `http.send`-shaped request
//! object, as OPA computes it. Pure computation: nothing is sent anywhere.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{err, operand, set_string, type_err, BuiltinError};
use crate::builtins::{BuiltinResult, Context};
use crate::value::Value;

const REQUIRED_CONFIG: [&str; 4] = [
    "aws_access_key",
    "aws_region",
    "aws_secret_access_key",
    "aws_service",
];

/// The request keys `http.send` accepts; `sign_req` validates against the same list.
const ALLOWED_REQUEST_KEYS: [&str; 28] = [
    "method",
    "url",
    "body",
    "enable_redirect",
    "force_json_decode",
    "force_yaml_decode",
    "headers",
    "raw_body",
    "tls_use_system_certs",
    "tls_ca_cert",
    "tls_ca_cert_file",
    "tls_ca_cert_env_variable",
    "tls_client_cert",
    "tls_client_cert_file",
    "tls_client_cert_env_variable",
    "tls_client_key",
    "tls_client_key_file",
    "tls_client_key_env_variable",
    "tls_insecure_skip_verify",
    "tls_server_name",
    "timeout",
    "cache",
    "force_cache",
    "force_cache_duration_seconds",
    "raise_error",
    "caching_mode",
    "max_retry_attempts",
    "cache_ignored_headers",
];

/// Proxies may rewrite these, so SigV4 leaves them out of the signature.
const UNSIGNED_HEADERS: [&str; 3] = ["authorization", "user-agent", "x-amzn-trace-id"];

type Object = BTreeMap<Value, Value>;

fn text_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn object_arg(args: &[Value], pos: usize, reported: usize) -> Result<&Object, BuiltinError> {
    match operand(args, pos)? {
        Value::Object(o) => Ok(o),
        other => Err(type_err(reported, other, "object")),
    }
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length.
        Err(_) => Vec::new(),
    }
}

pub(super) fn sign_req(args: &[Value], _: &Context) -> BuiltinResult {
    let req = object_arg(args, 1, 1)?;
    // OPA reports a bad config object as operand 1 too.
    let config = object_arg(args, 2, 1)?;

    let missing: Vec<&str> = REQUIRED_CONFIG
        .iter()
        .copied()
        .filter(|k| !config.contains_key(&Value::str(*k)))
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "operand 2 missing required AWS config parameters(s): {}",
            set_string(&missing)
        )));
    }
    let invalid: Vec<&str> = REQUIRED_CONFIG
        .iter()
        .copied()
        .filter(|k| {
            config
                .get(&Value::str(*k))
                .is_some_and(|v| v.as_str().is_none())
        })
        .collect();
    if !invalid.is_empty() {
        return Err(err(format!(
            "operand 2 invalid values for required AWS config parameters(s): {}",
            set_string(&invalid)
        )));
    }
    let get = |k: &str| config.get(&Value::str(k));
    let service = text_of(get("aws_service"));
    let access_key = text_of(get("aws_access_key"));
    let secret_key = text_of(get("aws_secret_access_key"));
    let region = text_of(get("aws_region"));
    let session_token = text_of(get("aws_session_token"));

    let ts_val = operand(args, 3)?;
    let Value::Number(ts) = ts_val else {
        return Err(type_err(1, ts_val, "number"));
    };
    let ts_ns = super::number_i64(ts)
        .ok_or_else(|| err("operand 3 could not convert time_ns value into a unix timestamp"))?;

    let invalid_keys: Vec<String> = req
        .keys()
        .filter(|k| {
            !k.as_str()
                .is_some_and(|s| ALLOWED_REQUEST_KEYS.contains(&s))
        })
        .map(Value::to_rego)
        .collect();
    if !invalid_keys.is_empty() {
        let set: BTreeSet<Value> = req
            .keys()
            .filter(|k| {
                !k.as_str()
                    .is_some_and(|s| ALLOWED_REQUEST_KEYS.contains(&s))
            })
            .cloned()
            .collect();
        return Err(err(format!(
            "operand 1 invalid request parameters(s): {}",
            super::opa_string(&Value::Set(set))
        )));
    }
    let missing_req: Vec<&str> = ["method", "url"]
        .into_iter()
        .filter(|k| !req.contains_key(&Value::str(*k)))
        .collect();
    if !missing_req.is_empty() {
        return Err(err(format!(
            "operand 1 missing required request parameters(s): {}",
            set_string(&missing_req)
        )));
    }

    let empty = Object::new();
    let headers = match req.get(&Value::str("headers")) {
        None => &empty,
        Some(Value::Object(o)) => o,
        Some(other) => return Err(type_err(0, other, "object")),
    };
    let bad_req: Vec<&str> = ["url", "method"]
        .into_iter()
        .filter(|k| {
            req.get(&Value::str(*k))
                .is_some_and(|v| v.as_str().is_none())
        })
        .collect();
    if !bad_req.is_empty() {
        return Err(err(format!(
            "operand 1 invalid values for required request parameters(s): {}",
            set_string(&bad_req)
        )));
    }
    let url_text = text_of(req.get(&Value::str("url")));
    let url = parse_url(&url_text)?;
    let method = text_of(req.get(&Value::str("method")));

    let body: Vec<u8> = match (
        req.get(&Value::str("raw_body")),
        req.get(&Value::str("body")),
    ) {
        (Some(raw), _) => raw.as_str().unwrap_or_default().as_bytes().to_vec(),
        (None, Some(b)) => crate::builtins::crypto::go_json(b).into_bytes(),
        (None, None) => Vec::new(),
    };

    // Non-string header names and values become empty strings, as in OPA.
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in headers {
        header_map.insert(text_of(Some(k)), text_of(Some(v)));
    }

    let disable_payload_signing = match config.get(&Value::str("disable_payload_signing")) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(err(
                "operand 2 invalid value for 'disable_payload_signing' in AWS config",
            ))
        }
    };

    let signer = SigV4 {
        method: &method,
        path: &url.escaped_path,
        query: &url.raw_query,
        host: &url.host,
        body: &body,
        service: &service,
        region: &region,
        access_key: &access_key,
        secret_key: &secret_key,
        session_token: &session_token,
        time_ns: ts_ns,
        disable_payload_signing,
    };
    let (auth, aws_headers) = signer.sign(&header_map);

    let mut signed = Object::new();
    for (k, v) in header_map {
        signed.insert(Value::String(k), Value::String(v));
    }
    signed.insert(Value::str("Authorization"), Value::String(auth));
    for (k, v) in aws_headers {
        signed.insert(Value::String(k), Value::String(v));
    }
    let mut out = req.clone();
    out.insert(Value::str("headers"), Value::Object(signed));
    Ok(Some(Value::Object(out)))
}

struct SigV4<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    host: &'a str,
    body: &'a [u8],
    service: &'a str,
    region: &'a str,
    access_key: &'a str,
    secret_key: &'a str,
    session_token: &'a str,
    time_ns: i64,
    disable_payload_signing: bool,
}

impl SigV4<'_> {
    /// The Authorization header and the headers SigV4 adds to the request.
    fn sign(
        &self,
        request_headers: &BTreeMap<String, String>,
    ) -> (String, BTreeMap<String, String>) {
        let content_sha = if self.disable_payload_signing {
            "UNSIGNED-PAYLOAD".to_owned()
        } else {
            hex::encode(Sha256::digest(self.body))
        };
        let (date, stamp) = utc_stamps(self.time_ns);

        let mut aws_headers = BTreeMap::new();
        aws_headers.insert("host".to_owned(), self.host.to_owned());
        aws_headers.insert("x-amz-date".to_owned(), stamp.clone());
        // S3 and Glacier want the payload hash as a header too; other services do not.
        if self.service == "s3" || self.service == "glacier" {
            aws_headers.insert("x-amz-content-sha256".to_owned(), content_sha.clone());
        }
        if !self.session_token.is_empty() {
            aws_headers.insert(
                "x-amz-security-token".to_owned(),
                self.session_token.to_owned(),
            );
        }

        let mut to_sign = aws_headers.clone();
        for (k, v) in request_headers {
            let lower = k.to_lowercase();
            if !UNSIGNED_HEADERS.contains(&lower.as_str()) {
                to_sign.insert(lower, v.clone());
            }
        }

        let mut canonical = format!("{}\n{}\n{}\n", self.method, self.path, self.query);
        for (k, v) in &to_sign {
            canonical.push_str(&format!("{k}:{v}\n"));
        }
        canonical.push('\n');
        let signed_headers = to_sign.keys().cloned().collect::<Vec<_>>().join(";");
        canonical.push_str(&signed_headers);
        canonical.push('\n');
        canonical.push_str(&content_sha);

        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac256(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        key = hmac256(&key, self.region.as_bytes());
        key = hmac256(&key, self.service.as_bytes());
        key = hmac256(&key, b"aws4_request");
        let signature = hex::encode(hmac256(&key, string_to_sign.as_bytes()));

        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
            self.access_key
        );
        (auth, aws_headers)
    }
}

/// `20060102` and `20060102T150405Z` for a Unix time in nanoseconds (UTC).
fn utc_stamps(time_ns: i64) -> (String, String) {
    let secs = time_ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, stamp)
}

/// Proleptic Gregorian date for a count of days since 1970-01-01 (H. Hinnant's algorithm).
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

/// The parts of Go's `url.URL` that SigV4 reads.
struct Url {
    host: String,
    escaped_path: String,
    raw_query: String,
}

fn url_err(raw: &str, what: &str) -> BuiltinError {
    err(format!("parse \"{raw}\": {what}"))
}

/// Characters Go leaves alone in a path (`shouldEscape(c, encodePath)` is false).
fn path_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&c)
}

/// A subset of Go's `url.Parse`, enough to find the host, escaped path and raw query.
fn parse_url(raw: &str) -> Result<Url, BuiltinError> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(url_err(raw, "net/url: invalid control character in URL"));
    }
    let no_frag = raw.split_once('#').map_or(raw, |(a, _)| a);
    let mut rest = no_frag;
    if let Some(colon) = rest.find(':') {
        let scheme = rest.get(..colon).unwrap_or_default();
        let first_alpha = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic());
        let scheme_chars = scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if scheme.is_empty() {
            return Err(url_err(raw, "missing protocol scheme"));
        }
        if first_alpha && scheme_chars {
            rest = rest.get(colon + 1..).unwrap_or_default();
        }
    }
    let raw_query;
    (rest, raw_query) = match rest.split_once('?') {
        Some((a, q)) => (a, q.to_owned()),
        None => (rest, String::new()),
    };
    let mut host = String::new();
    if let Some(after) = rest.strip_prefix("//") {
        let (authority, path) = match after.find('/') {
            Some(i) => (
                after.get(..i).unwrap_or_default(),
                after.get(i..).unwrap_or_default(),
            ),
            None => (after, ""),
        };
        let h = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if !h.starts_with('[') {
            if let Some((_, port)) = h.rsplit_once(':') {
                if !port.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(url_err(
                        raw,
                        &format!("invalid port \":{port}\" after host"),
                    ));
                }
            }
        }
        host = h.to_owned();
        rest = path;
    }
    Ok(Url {
        host,
        escaped_path: escape_path(raw, rest)?,
        raw_query,
    })
}

/// Go's `URL.EscapedPath`: the path as written when it is validly encoded, otherwise the
/// decoded path re-encoded.
fn escape_path(raw: &str, path: &str) -> Result<String, BuiltinError> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hexpair = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let v = hexpair
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    let shown: String = path
                        .get(i..(i + 3).min(path.len()))
                        .unwrap_or("%")
                        .to_owned();
                    url_err(raw, &format!("invalid URL escape \"{shown}\""))
                })?;
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(c);
            i += 1;
        }
    }
    let valid = bytes
        .iter()
        .all(|c| path_safe(*c) || b"!'()*[]%".contains(c));
    if valid {
        return Ok(path.to_owned());
    }
    let mut out = String::with_capacity(decoded.len() * 3);
    for c in decoded {
        if path_safe(c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(
            utc_stamps(1_451_264_400_000_000_000),
            ("20151228".into(), "20151228T010000Z".into())
        );
        assert_eq!(
            utc_stamps(0),
            ("19700101".into(), "19700101T000000Z".into())
        );
        assert_eq!(
            utc_stamps(-1),
            ("19691231".into(), "19691231T235959Z".into())
        );
    }

    #[test]
    fn urls_split_like_go() {
        let u = parse_url("https://user@example.com:8443/a b/c?x=1&y=2#frag").unwrap();
        assert_eq!(u.host, "example.com:8443");
        assert_eq!(u.escaped_path, "/a%20b/c");
        assert_eq!(u.raw_query, "x=1&y=2");
        let u = parse_url("http://example.com").unwrap();
        assert_eq!(
            (u.host.as_str(), u.escaped_path.as_str()),
            ("example.com", "")
        );
        assert!(parse_url("http://example.com/%zz").is_err());
        assert!(parse_url("http://example.com:abc/").is_err());
    }
}
