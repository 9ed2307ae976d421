//! Text encodings with the exact leniencies of the Go functions OPA calls: policies feed these
//! builtins tokens and PEM files produced by other tools, and a stricter decoder would turn a
//! token OPA accepts into an undefined decision.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::value::{Number, Value};

use super::{err, BuiltinError};

/// Go's decoders accept non-zero trailing bits and insist on canonical padding.
const GO_DECODE: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GO_DECODE);
const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, GO_DECODE);
const URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(false),
);

fn strip_newlines(s: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if s.iter().any(|b| *b == b'\r' || *b == b'\n') {
        std::borrow::Cow::Owned(
            s.iter()
                .copied()
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Go's wording for a base64 error, which policies and tests match on.
fn b64_err(e: base64::DecodeError, len: usize) -> BuiltinError {
    let at = match e {
        base64::DecodeError::InvalidByte(i, _) | base64::DecodeError::InvalidLastSymbol(i, _) => i,
        // Go stops at the start of the incomplete final quantum.
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidPadding => {
            len - len % 4
        }
    };
    err(format!("illegal base64 data at input byte {at}"))
}

/// `base64.StdEncoding.DecodeString`: padded, newlines ignored.
pub(super) fn b64_std_decode(s: &[u8]) -> Result<Vec<u8>, BuiltinError> {
    let clean = strip_newlines(s);
    STD.decode(&clean).map_err(|e| b64_err(e, clean.len()))
}

pub(super) fn b64_std_encode(b: &[u8]) -> String {
    STD.encode(b)
}

/// OPA's `base64url.decode`: padding is optional but, when absent, is restored per RFC 7515
/// appendix C before a strict padded decode.
pub(super) fn b64url_decode(s: &str) -> Result<Vec<u8>, BuiltinError> {
    let mut text = s.to_owned();
    if !s.ends_with('=') {
        match s.len() % 4 {
            0 => {}
            2 => text.push_str("=="),
            3 => text.push('='),
            _ => return Err(err(format!("illegal base64url string: {s}"))),
        }
    }
    let clean = strip_newlines(text.as_bytes());
    URL.decode(&clean).map_err(|e| b64_err(e, clean.len()))
}

pub(super) fn b64url_encode_raw(b: &[u8]) -> String {
    URL_NO_PAD.encode(b)
}

pub(super) fn b64url_decode_raw(s: &str) -> Option<Vec<u8>> {
    // JWK members are unpadded base64url; some producers pad anyway.
    URL.decode(s.trim_end_matches('=')).ok().or_else(|| {
        GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GO_DECODE.with_decode_padding_mode(DecodePaddingMode::RequireNone),
        )
        .decode(s.trim_end_matches('='))
        .ok()
    })
}

/// One PEM block as Go's `encoding/pem` sees it.
#[derive(Debug, Clone)]
pub(super) struct PemBlock {
    pub typ: String,
    pub bytes: Vec<u8>,
}

const PEM_BEGIN: &[u8] = b"-----BEGIN ";
const PEM_END: &[u8] = b"\n-----END ";
const PEM_DASHES: &[u8] = b"-----";

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let h = hay.get(from..)?;
    h.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn rfind(hay: &[u8], needle: &[u8], from: usize, to: usize) -> Option<usize> {
    let h = hay.get(from..to)?;
    h.windows(needle.len())
        .rposition(|w| w == needle)
        .map(|p| p + from)
}

/// Go's `getLine`: the line (trailing `\r`, spaces and tabs trimmed) and the offset just past
/// its newline.
fn get_line(data: &[u8], at: usize) -> (&[u8], usize) {
    let tail = data.get(at..).unwrap_or_default();
    let (mut line, next) = match tail.iter().position(|b| *b == b'\n') {
        Some(i) => (tail.get(..i).unwrap_or_default(), at + i + 1),
        None => (tail, data.len()),
    };
    if let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    while let Some(l) = line.strip_suffix(b" ").or_else(|| line.strip_suffix(b"\t")) {
        line = l;
    }
    (line, next)
}

/// Finds the next well-formed PEM block the way `pem.Decode` does (junk before it is skipped)
/// and returns it with the offset where the rest of the input starts.
pub(super) fn pem_decode(data: &[u8]) -> Option<(PemBlock, usize)> {
    let mut window = 0usize;
    loop {
        let end_at = find(data, PEM_END, window)?;
        let next_window = end_at + PEM_END.len();
        let start = window;
        let begin = rfind(data, PEM_BEGIN, window, end_at);
        window = next_window;
        let Some(begin) = begin else { continue };
        if begin > start && data.get(begin - 1) != Some(&b'\n') {
            continue;
        }
        let (type_line, mut pos) = get_line(data, begin + PEM_BEGIN.len());
        let Some(typ) = type_line.strip_suffix(PEM_DASHES) else {
            continue;
        };
        let mut has_headers = false;
        loop {
            if pos >= data.len() {
                return None;
            }
            let (line, next) = get_line(data, pos);
            if !line.contains(&b':') {
                break;
            }
            has_headers = true;
            pos = next;
        }
        // With headers, the END marker must come after them on its own line.
        if has_headers && end_at < pos {
            continue;
        }
        let trailer_at = end_at + PEM_END.len();
        let want_len = typ.len() + PEM_DASHES.len();
        let Some(trailer) = data.get(trailer_at..trailer_at + want_len) else {
            continue;
        };
        if !trailer.starts_with(typ) || !trailer.ends_with(PEM_DASHES) {
            continue;
        }
        let (after, rest_at) = get_line(data, trailer_at + want_len);
        if !after.is_empty() {
            continue;
        }
        let bytes = if end_at > pos {
            let body: Vec<u8> = data
                .get(pos..end_at)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|b| *b != b' ' && *b != b'\t')
                .collect();
            match b64_std_decode(&body) {
                Ok(b) => b,
                Err(_) => continue,
            }
        } else {
            Vec::new()
        };
        let typ = String::from_utf8_lossy(typ).into_owned();
        return Some((PemBlock { typ, bytes }, rest_at));
    }
}

/// `pem.Encode` without headers: 64-column base64 lines.
pub(super) fn pem_encode(typ: &str, der: &[u8]) -> String {
    let b64 = b64_std_encode(der);
    let mut out = format!("-----BEGIN {typ}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {typ}-----\n"));
    out
}

/// Go's `json.Marshal` of the value `ast.JSON` produces: keys sorted, sets as arrays, and
/// `<`, `>`, `&`, U+2028 and U+2029 escaped as Go does.
pub(in crate::builtins) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, v);
    out
}

fn write_go_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => write_go_string(out, s),
        Value::Array(items) => write_seq(out, items.iter()),
        Value::Set(items) => write_seq(out, items.iter()),
        Value::Object(o) => {
            let mut entries: Vec<(String, &Value)> = o
                .iter()
                .map(|(k, v)| match k {
                    Value::String(s) => (s.clone(), v),
                    other => (other.to_json_string(), v),
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, k);
                out.push(':');
                write_go_json(out, v);
            }
            out.push('}');
        }
    }
}

fn write_seq<'a>(out: &mut String, items: impl Iterator<Item = &'a Value>) {
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go_json(out, v);
    }
    out.push(']');
}

fn number_text(n: &Number) -> String {
    n.to_string()
}

pub(super) fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses JSON text as OPA's `json.unmarshal` does (last duplicate key wins; invalid UTF-8
/// becomes U+FFFD as in Go).
pub(super) fn parse_json(bytes: &[u8]) -> Result<Value, BuiltinError> {
    let text = String::from_utf8_lossy(bytes);
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    Ok(Value::from_json(&v))
}

/// `extractJSONObject` in OPA's token code.
pub(super) fn parse_json_object(
    bytes: &[u8],
) -> Result<std::collections::BTreeMap<Value, Value>, BuiltinError> {
    match parse_json(bytes)? {
        Value::Object(o) => Ok(o),
        _ => Err(err("decoded JSON type was not an Object")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn b64url_restores_padding() {
        assert_eq!(b64url_decode("e30").unwrap(), b"{}");
        assert_eq!(b64url_decode("e30=").unwrap(), b"{}");
        assert!(b64url_decode("e").is_err());
        assert_eq!(b64url_decode("").unwrap(), b"");
    }

    #[test]
    fn pem_follows_go_framing() {
        let text = b"junk\n-----BEGIN FOO-----\nAQID\n-----END FOO-----\nnext";
        let (block, rest) = pem_decode(text).unwrap();
        assert_eq!(block.typ, "FOO");
        assert_eq!(block.bytes, vec![1, 2, 3]);
        assert_eq!(text.get(rest..), Some(&b"next"[..]));
        assert!(pem_decode(b"-----BEGIN FOO-----\nAQID\n-----END BAR-----\n").is_none());
        assert!(pem_decode(b"no pem here").is_none());
        let empty = b"-----BEGIN X-----\n-----END X-----";
        assert_eq!(pem_decode(empty).unwrap().0.bytes, Vec::<u8>::new());
        let enc = pem_encode("FOO", &[1, 2, 3]);
        assert_eq!(pem_decode(enc.as_bytes()).unwrap().0.bytes, vec![1, 2, 3]);
    }

    #[test]
    fn go_json_sorts_and_escapes() {
        let v = Value::parse_rego(r#"{"b": 1, "a": ["<&>", {1, 2}]}"#).unwrap();
        assert_eq!(go_json(&v), r#"{"a":["\u003c\u0026\u003e",[1,2]],"b":1}"#);
    }
}
