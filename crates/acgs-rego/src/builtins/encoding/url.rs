//! urlquery.* and uri.*, following Go's `net/url` escaping and parsing rules.

use std::collections::BTreeMap;

use super::{arg, err, string_operand, type_err, BuiltinError, BuiltinResult, Context};
use crate::builtins::time::strconv_quote;
use crate::value::Value;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(mode, Mode::Host | Mode::Zone)
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::UserPassword => matches!(c, b'@' | b'/' | b'?' | b':'),
                Mode::QueryComponent => true,
                Mode::Fragment => false,
                Mode::Host | Mode::Zone => true,
            };
        }
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c == b' ' && mode == Mode::QueryComponent {
            out.push('+');
        } else if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(char::from(c));
        }
    }
    out
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `unescape`; errors carry Go's text.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(unhex);
                let lo = b.get(i + 2).copied().and_then(unhex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    let bad = s.get(i..).unwrap_or_default();
                    let bad: String = bad
                        .chars()
                        .scan(0usize, |n, ch| {
                            *n += ch.len_utf8();
                            (*n <= 3).then_some(ch)
                        })
                        .collect();
                    return Err(format!("invalid URL escape {}", strconv_quote(&bad)));
                };
                let triple = s.get(i..i + 3).unwrap_or_default();
                if mode == Mode::Host && hi < 8 && triple != "%25" {
                    return Err(format!("invalid URL escape {}", strconv_quote(triple)));
                }
                let v = hi << 4 | lo;
                if mode == Mode::Zone
                    && triple != "%25"
                    && v != b' '
                    && should_escape(v, Mode::Host)
                {
                    return Err(format!("invalid URL escape {}", strconv_quote(triple)));
                }
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(if mode == Mode::QueryComponent {
                    b' '
                } else {
                    b'+'
                });
                i += 1;
            }
            _ => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                    let ch = char::from(c).to_string();
                    return Err(format!(
                        "invalid character {} in host name",
                        strconv_quote(&ch)
                    ));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub(super) fn query_encode(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    Ok(Some(Value::String(escape(s, Mode::QueryComponent))))
}

pub(super) fn query_decode(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    unescape(s, Mode::QueryComponent)
        .map(|v| Some(Value::String(v)))
        .map_err(BuiltinError)
}

pub(super) fn query_encode_object(args: &[Value], _: &Context) -> BuiltinResult {
    let obj = match arg(args, 1)? {
        Value::Object(o) => o,
        other => return type_err(1, "object", other),
    };
    fn bad<T>() -> Result<T, BuiltinError> {
        err("operand 1 values must be string, array[string], or set[string]")
    }
    // url.Values.Encode sorts by key; values keep their order.
    let mut pairs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (k, v) in obj {
        let key = super::key_text(k);
        let vals: Vec<&str> = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .map_or_else(bad, Ok)?,
            Value::Set(items) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .map_or_else(bad, Ok)?,
            _ => return bad(),
        };
        pairs.entry(key).or_default().extend(vals);
    }
    let mut out = String::new();
    for (k, vals) in &pairs {
        let ek = escape(k, Mode::QueryComponent);
        for v in vals {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&ek);
            out.push('=');
            out.push_str(&escape(v, Mode::QueryComponent));
        }
    }
    Ok(Some(Value::String(out)))
}

pub(super) fn query_decode_object(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut first_err: Option<String> = None;
    for part in s.split('&') {
        if part.contains(';') {
            first_err.get_or_insert_with(|| "invalid semicolon separator in query".to_owned());
            continue;
        }
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let k = match unescape(k, Mode::QueryComponent) {
            Ok(k) => k,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        let v = match unescape(v, Mode::QueryComponent) {
            Ok(v) => v,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        map.entry(k).or_default().push(Value::String(v));
    }
    if let Some(e) = first_err {
        return err(e);
    }
    Ok(Some(Value::Object(
        map.into_iter()
            .map(|(k, v)| (Value::String(k), Value::Array(v)))
            .collect(),
    )))
}

/// The parts of a URL that `uri.parse` reports.
#[derive(Default, Debug)]
struct Url {
    scheme: String,
    opaque: bool,
    host: String,
    path: String,
    raw_path: String,
    raw_query: String,
    fragment: String,
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(scheme: &str, host: &str) -> Result<String, String> {
    match host.rfind('[') {
        Some(i) if i > 0 => return Err("invalid IP-literal".into()),
        Some(_) => {
            let close = host.rfind(']').ok_or("missing ']' in host")?;
            let colon_port = host.get(close + 1..).unwrap_or_default();
            if !valid_optional_port(colon_port) {
                return Err(format!(
                    "invalid port {} after host",
                    strconv_quote(colon_port)
                ));
            }
            let port = unescape(colon_port, Mode::Host)?;
            let name = host.get(1..close).unwrap_or_default();
            let unescaped = match name.find("%25") {
                Some(z) => {
                    unescape(name.get(..z).unwrap_or_default(), Mode::Host)?
                        + &unescape(name.get(z..).unwrap_or_default(), Mode::Zone)?
                }
                None => unescape(name, Mode::Host)?,
            };
            let addr = unescaped.split('%').next().unwrap_or_default();
            if addr.parse::<std::net::Ipv4Addr>().is_ok() {
                return Err("invalid IP-literal".into());
            }
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!(
                    "invalid host: ParseAddr({}): unable to parse IP",
                    strconv_quote(&unescaped)
                ));
            }
            return Ok(format!("[{unescaped}]{port}"));
        }
        None => {}
    }
    if let Some(first) = host.find(':') {
        let last = host.rfind(':').unwrap_or(first);
        // Go 1.26 reads the port from the first colon for http(s), the last otherwise.
        let i = if scheme == "http" || scheme == "https" {
            first
        } else {
            last
        };
        let colon_port = host.get(i..).unwrap_or_default();
        if !valid_optional_port(colon_port) {
            return Err(format!(
                "invalid port {} after host",
                strconv_quote(colon_port)
            ));
        }
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &str) -> bool {
    s.chars().all(|r| {
        r.is_ascii_alphanumeric()
            || matches!(
                r,
                '-' | '.'
                    | '_'
                    | ':'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | ';'
                    | '='
                    | '%'
                    | '@'
            )
    })
}

/// Go's `url.Parse`, with its error text (without the `parse "..."` wrapper).
fn parse_url(raw: &str) -> Result<Url, (String, String)> {
    let (u, frag) = raw.split_once('#').unwrap_or((raw, ""));
    let wrap = |subject: &str| {
        let subject = subject.to_owned();
        move |e: String| (subject, e)
    };
    let mut url = parse_no_frag(u).map_err(wrap(u))?;
    if !frag.is_empty() {
        url.fragment = unescape(frag, Mode::Fragment).map_err(wrap(raw))?;
    }
    Ok(url)
}

fn parse_no_frag(raw: &str) -> Result<Url, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let mut url = Url::default();
    if raw == "*" {
        url.path = "*".into();
        return Ok(url);
    }
    let mut rest = raw;
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => {
                url.scheme = raw.get(..i).unwrap_or_default().to_ascii_lowercase();
                rest = raw.get(i + 1..).unwrap_or_default();
                break;
            }
            _ => break,
        }
    }
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = rest.get(..rest.len() - 1).unwrap_or_default();
    } else if let Some((r, q)) = rest.split_once('?') {
        url.raw_query = q.to_owned();
        rest = r;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = true;
            return Ok(url);
        }
        let segment = rest.split('/').next().unwrap_or_default();
        if segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority_and_path = rest.get(2..).unwrap_or_default();
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => (
                authority_and_path.get(..i).unwrap_or_default(),
                authority_and_path.get(i..).unwrap_or_default(),
            ),
            None => (authority_and_path, ""),
        };
        let (userinfo, hostpart) = match authority.rfind('@') {
            Some(i) => (
                Some(authority.get(..i).unwrap_or_default()),
                authority.get(i + 1..).unwrap_or_default(),
            ),
            None => (None, authority),
        };
        url.host = parse_host(&url.scheme, hostpart)?;
        if let Some(ui) = userinfo {
            if !valid_userinfo(ui) {
                return Err("net/url: invalid userinfo".into());
            }
            let (user, pass) = ui.split_once(':').unwrap_or((ui, ""));
            unescape(user, Mode::UserPassword)?;
            unescape(pass, Mode::UserPassword)?;
        }
        rest = path;
    }
    url.path = unescape(rest, Mode::Path)?;
    url.raw_path = if escape(&url.path, Mode::Path) == rest {
        String::new()
    } else {
        rest.to_owned()
    };
    Ok(url)
}

/// `url.URL.Hostname()` and `Port()`.
fn split_host_port(host: &str) -> (&str, &str) {
    let (mut h, mut p) = (host, "");
    if let Some(i) = host.rfind(':') {
        if valid_optional_port(host.get(i..).unwrap_or_default()) {
            h = host.get(..i).unwrap_or_default();
            p = host.get(i + 1..).unwrap_or_default();
        }
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        h = inner;
    }
    (h, p)
}

pub(super) fn uri_parse(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    let url = parse_url(s)
        .map_err(|(subject, e)| BuiltinError(format!("parse {}: {e}", strconv_quote(&subject))))?;
    let mut obj = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            obj.insert(Value::str(k), Value::str(v));
        }
    };
    put("scheme", &url.scheme);
    let (hostname, port) = split_host_port(&url.host);
    put("hostname", hostname);
    put("port", port);
    if !url.opaque {
        put("path", &url.path);
        put(
            "raw_path",
            if url.raw_path.is_empty() {
                &url.path
            } else {
                &url.raw_path
            },
        );
    }
    put("raw_query", &url.raw_query);
    put("fragment", &url.fragment);
    Ok(Some(Value::Object(obj)))
}

pub(super) fn uri_is_valid(args: &[Value], _: &Context) -> BuiltinResult {
    let valid = match args.first() {
        Some(Value::String(s)) if !s.is_empty() => parse_url(s).is_ok(),
        _ => false,
    };
    Ok(Some(Value::Bool(valid)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::call;
    use super::*;

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn query_escaping() {
        assert_eq!(
            call("urlquery.encode", &[s("a b&c=d/é~")]),
            Ok(Some(s("a+b%26c%3Dd%2F%C3%A9~")))
        );
        assert_eq!(
            call("urlquery.decode", &[s("a+b%26c%3Dd%2F%C3%A9~")]),
            Ok(Some(s("a b&c=d/é~")))
        );
        assert_eq!(
            call("urlquery.decode", &[s("%zz")]),
            Err(BuiltinError(r#"invalid URL escape "%zz""#.into()))
        );
        assert_eq!(
            call("urlquery.decode", &[s("a%2")]),
            Err(BuiltinError(r#"invalid URL escape "%2""#.into()))
        );
    }

    #[test]
    fn query_objects() {
        let obj = Value::parse_rego(r#"{"b": ["x", "y z"], "a": "1", "c": {"q"}}"#).unwrap();
        assert_eq!(
            call("urlquery.encode_object", &[obj]),
            Ok(Some(s("a=1&b=x&b=y+z&c=q")))
        );
        let bad = Value::parse_rego(r#"{"a": 1}"#).unwrap();
        assert!(call("urlquery.encode_object", &[bad]).is_err());
        assert_eq!(
            call("urlquery.decode_object", &[s("a=1&b=x&b=y+z&&c")]),
            Ok(Some(
                Value::parse_rego(r#"{"a": ["1"], "b": ["x", "y z"], "c": [""]}"#).unwrap()
            ))
        );
        assert!(call("urlquery.decode_object", &[s("a=1;b=2")]).is_err());
    }

    #[test]
    fn uri_parse_parts() {
        assert_eq!(
            call("uri.parse", &[s("https://user@Example.com:8443/a%20b/c?x=1&y#frag%21")]),
            Ok(Some(
                Value::parse_rego(
                    r#"{"scheme": "https", "hostname": "Example.com", "port": "8443", "path": "/a b/c", "raw_path": "/a b/c", "raw_query": "x=1&y", "fragment": "frag!"}"#
                )
                .unwrap()
            ))
        );
        assert_eq!(
            call("uri.parse", &[s("mailto:someone@example.com")]),
            Ok(Some(Value::parse_rego(r#"{"scheme": "mailto"}"#).unwrap()))
        );
        assert_eq!(
            call("uri.parse", &[s(":foo")]),
            Err(BuiltinError(
                r#"parse ":foo": missing protocol scheme"#.into()
            ))
        );
        assert_eq!(call("uri.is_valid", &[s("")]), Ok(Some(Value::Bool(false))));
        assert_eq!(
            call("uri.is_valid", &[s("http://[::1]:80/")]),
            Ok(Some(Value::Bool(true)))
        );
        assert_eq!(
            call("uri.is_valid", &[s("http://a b/")]),
            Ok(Some(Value::Bool(false)))
        );
    }
}
