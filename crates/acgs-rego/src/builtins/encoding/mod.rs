//! Host builtins: json.*, yaml.*, hex.*, base64url.encode_no_pad, urlquery.*, uri.*, graphql.*.
//!
//! Output text has to match OPA's byte for byte (policies compare it, sign it, or hash it), so
//! the encoders here follow Go's `encoding/json`, `net/url` and go-yaml v3 rather than the
//! nearest Rust crate.

use super::{BuiltinError, BuiltinFn, BuiltinResult, Context};
use crate::value::{Number, Value};

mod graphql;
mod jsonpatch;
mod jsonschema;
mod url;
mod yaml;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    Some(match name {
        "json.marshal_with_options" => json_marshal_with_options,
        "json.patch" => jsonpatch::json_patch,
        "json.match_schema" => jsonschema::match_schema,
        "json.verify_schema" => jsonschema::verify_schema,
        "graphql.is_valid" => graphql::is_valid,
        "graphql.parse" => graphql::parse,
        "graphql.parse_and_verify" => graphql::parse_and_verify,
        "graphql.parse_query" => graphql::parse_query,
        "graphql.parse_schema" => graphql::parse_schema,
        "graphql.schema_is_valid" => graphql::schema_is_valid,
        "yaml.is_valid" => yaml::is_valid,
        "yaml.marshal" => yaml::marshal,
        "yaml.unmarshal" => yaml::unmarshal,
        "hex.encode" => hex_encode,
        "hex.decode" => hex_decode,
        "base64url.encode_no_pad" => base64url_encode_no_pad,
        "urlquery.encode" => url::query_encode,
        "urlquery.decode" => url::query_decode,
        "urlquery.encode_object" => url::query_encode_object,
        "urlquery.decode_object" => url::query_decode_object,
        "uri.is_valid" => url::uri_is_valid,
        "uri.parse" => url::uri_parse,
        _ => return None,
    })
}

fn err<T>(msg: impl Into<String>) -> Result<T, BuiltinError> {
    Err(BuiltinError(msg.into()))
}

fn arg(args: &[Value], pos: usize) -> Result<&Value, BuiltinError> {
    args.get(pos.wrapping_sub(1))
        .ok_or_else(|| BuiltinError(format!("operand {pos} missing")))
}

fn type_err<T>(pos: usize, want: &str, got: &Value) -> Result<T, BuiltinError> {
    err(format!(
        "operand {pos} must be {want} but got {}",
        got.type_name()
    ))
}

fn string_operand(args: &[Value], pos: usize) -> Result<&str, BuiltinError> {
    match arg(args, pos)? {
        Value::String(s) => Ok(s),
        other => type_err(pos, "string", other),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON text as Go's encoding/json writes it

/// Shortest round-trip decimal digits of a finite, non-zero `f` and its decimal point
/// position: `f == 0.d1d2d3... * 10^dp`.
fn shortest_digits(f: f64) -> (String, i32) {
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (digits.to_owned(), exp.parse::<i32>().unwrap_or(0) + 1)
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`.
fn go_fmt_f(f: f64) -> String {
    format!("{f}")
}

/// `strconv.FormatFloat(f, 'e', -1, 64)`: `d.ddde±XX`.
fn go_fmt_e(f: f64) -> String {
    let (digits, dp) = shortest_digits(f);
    let mut out = String::new();
    if f < 0.0 {
        out.push('-');
    }
    let mut chars = digits.chars();
    out.push(chars.next().unwrap_or('0'));
    let rest: String = chars.collect();
    if !rest.is_empty() {
        out.push('.');
        out.push_str(&rest);
    }
    let exp = if f == 0.0 { 0 } else { dp - 1 };
    out.push_str(&format!(
        "e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    ));
    out
}

/// `strconv.FormatFloat(f, 'g', -1, 64)` (go-yaml's float spelling).
fn go_fmt_g(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (_, dp) = shortest_digits(f);
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        go_fmt_e(f)
    } else {
        go_fmt_f(f)
    }
}

/// How encoding/json spells a float64.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = go_fmt_e(f);
        // Go trims one leading zero from a two-digit negative exponent ("e-07" -> "e-7").
        if let Some(idx) = s.find("e-0") {
            if s.len() == idx + 4 {
                return format!(
                    "{}e-{}",
                    s.get(..idx).unwrap_or_default(),
                    s.get(idx + 3..).unwrap_or_default()
                );
            }
        }
        return s;
    }
    go_fmt_f(f)
}

fn number_text(n: &Number) -> String {
    match n {
        Number::Int(i) => i.to_string(),
        Number::Big(s) => s.clone(),
        Number::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                go_json_float(*f)
            }
        }
    }
}

fn push_go_json_string(out: &mut String, s: &str) {
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
            // HTML-sensitive characters and JS line separators, escaped as Go does by default.
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON object key for a Rego key: strings as they are, other values as their JSON text.
fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => go_json(other, None),
    }
}

/// Go's `json.Marshal` (`indent == None`) or `json.MarshalIndent(v, prefix, indent)`.
fn go_json(v: &Value, indent: Option<(&str, &str)>) -> String {
    let mut out = String::new();
    write_go_json(&mut out, v, indent, 0);
    out
}

fn newline(out: &mut String, indent: Option<(&str, &str)>, depth: usize) {
    if let Some((prefix, ind)) = indent {
        out.push('\n');
        out.push_str(prefix);
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_go_json(out: &mut String, v: &Value, indent: Option<(&str, &str)>, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_text(n)),
        Value::String(s) => push_go_json_string(out, s),
        Value::Array(_) | Value::Set(_) => {
            let items: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                Value::Set(s) => s.iter().collect(),
                _ => Vec::new(),
            };
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_go_json(out, item, indent, depth + 1);
            }
            newline(out, indent, depth);
            out.push(']');
        }
        Value::Object(o) => {
            if o.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(String, &Value)> =
                o.iter().map(|(k, v)| (key_text(k), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                push_go_json_string(out, &k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_go_json(out, val, indent, depth + 1);
            }
            newline(out, indent, depth);
            out.push('}');
        }
    }
}

/// Converts a Rego value to its JSON form (sets as arrays, keys as strings), as `ast.JSON` does.
fn to_json_value(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_value).collect()),
        Value::Set(s) => Value::Array(s.iter().map(to_json_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (Value::String(key_text(k)), to_json_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json_marshal_with_options(args: &[Value], _: &Context) -> BuiltinResult {
    let v = arg(args, 1)?;
    let opts = match arg(args, 2)? {
        Value::Object(o) => o,
        other => return type_err(2, "object", other),
    };
    let (mut indent, mut prefix) = ("\t".to_owned(), String::new());
    let mut implicit_pretty = false;
    let mut explicit_pretty: Option<bool> = None;
    for (k, val) in opts {
        let Value::String(key) = k else {
            return err(format!("operand 2 failed to stringify key {k}"));
        };
        match key.as_str() {
            "prefix" | "indent" => {
                let Value::String(s) = val else {
                    return err(format!(
                        "operand 2 key {key} failed cast to string: operand must be string but got {}",
                        val.type_name()
                    ));
                };
                if key == "prefix" {
                    prefix = s.clone();
                } else {
                    indent = s.clone();
                }
                implicit_pretty = true;
            }
            "pretty" => {
                let Value::Bool(b) = val else {
                    return err(format!("operand 2 key {key} failed cast to bool"));
                };
                explicit_pretty = Some(*b);
            }
            _ => {
                return err(format!(
                    "operand 2 object contained unknown key {}",
                    Value::String(key.clone())
                ))
            }
        }
    }
    if explicit_pretty.unwrap_or(implicit_pretty) {
        let body = go_json(v, Some((&prefix, &indent)));
        Ok(Some(Value::String(format!("{prefix}{body}"))))
    } else {
        Ok(Some(Value::String(go_json(v, None))))
    }
}

// ---------------------------------------------------------------------------------------------
// hex, base64url

fn hex_encode(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    Ok(Some(Value::String(hex::encode(s.as_bytes()))))
}

fn hex_decode(args: &[Value], _: &Context) -> BuiltinResult {
    let s = string_operand(args, 1)?;
    let b = s.as_bytes();
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    // Go reports the first invalid byte before an odd length.
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    while i + 1 < b.len() {
        let (hi, lo) = (
            b.get(i).copied().unwrap_or(0),
            b.get(i + 1).copied().unwrap_or(0),
        );
        let Some(h) = val(hi) else {
            return err(format!(
                "encoding/hex: invalid byte: {}",
                go_rune_quote(s, i)
            ));
        };
        let Some(l) = val(lo) else {
            return err(format!(
                "encoding/hex: invalid byte: {}",
                go_rune_quote(s, i + 1)
            ));
        };
        out.push(h << 4 | l);
        i += 2;
    }
    if b.len() % 2 == 1 {
        if let Some(&c) = b.last() {
            if val(c).is_none() {
                return err(format!(
                    "encoding/hex: invalid byte: {}",
                    go_rune_quote(s, b.len() - 1)
                ));
            }
        }
        return err("encoding/hex: odd length hex string");
    }
    Ok(Some(Value::String(
        String::from_utf8_lossy(&out).into_owned(),
    )))
}

/// Go's `%#U` of the byte at `i`, as encoding/hex's InvalidByteError prints it.
fn go_rune_quote(s: &str, i: usize) -> String {
    let b = s.as_bytes().get(i).copied().unwrap_or(0);
    let c = char::from(b);
    // strconv.IsPrint for U+0000..U+00FF.
    if b.is_ascii_graphic() || b == b' ' || (b >= 0xA1 && b != 0xAD) {
        format!("U+{:04X} '{c}'", u32::from(b))
    } else {
        format!("U+{:04X}", u32::from(b))
    }
}

fn base64url_encode_no_pad(args: &[Value], _: &Context) -> BuiltinResult {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let s = string_operand(args, 1)?;
    let sym = |i: u32| char::from(ALPHABET.get((i & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = b0 << 16 | b1 << 8 | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        }
    }
    Ok(Some(Value::String(out)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(super) fn call(name: &str, args: &[Value]) -> BuiltinResult {
        lookup(name).unwrap()(args, &Context { now_ns: 0 })
    }

    fn s(x: &str) -> Value {
        Value::str(x)
    }

    #[test]
    fn marshal_with_options() {
        let v = Value::parse_rego(r#"{"b": [1, 2.5, {"x"}], "a": "<&>", 3: {}}"#).unwrap();
        let opts = |o: &str| Value::parse_rego(o).unwrap();
        assert_eq!(
            call("json.marshal_with_options", &[v.clone(), opts("{}")]),
            Ok(Some(s(
                r#"{"3":{},"a":"\u003c\u0026\u003e","b":[1,2.5,["x"]]}"#
            )))
        );
        assert_eq!(
            call("json.marshal_with_options", &[v.clone(), opts(r#"{"indent": "  ", "prefix": "> "}"#)]),
            Ok(Some(s("> {\n>   \"3\": {},\n>   \"a\": \"\\u003c\\u0026\\u003e\",\n>   \"b\": [\n>     1,\n>     2.5,\n>     [\n>       \"x\"\n>     ]\n>   ]\n> }")))
        );
        assert_eq!(
            call(
                "json.marshal_with_options",
                &[Value::int(1), opts(r#"{"indent": "  ", "pretty": false}"#)]
            ),
            Ok(Some(s("1")))
        );
        assert!(call(
            "json.marshal_with_options",
            &[Value::int(1), opts(r#"{"bad": 1}"#)]
        )
        .is_err());
    }

    #[test]
    fn floats_like_go() {
        assert_eq!(go_json_float(1e21), "1e+21");
        assert_eq!(go_json_float(1e-7), "1e-7");
        assert_eq!(go_json_float(123.456), "123.456");
        assert_eq!(go_fmt_g(1e6), "1e+06");
        assert_eq!(go_fmt_g(123_456.7), "123456.7");
        assert_eq!(go_fmt_g(1.5e-5), "1.5e-05");
    }

    #[test]
    fn hex_and_base64url() {
        assert_eq!(
            call("hex.encode", &[s("lorem ipsum")]),
            Ok(Some(s("6c6f72656d20697073756d")))
        );
        assert_eq!(
            call("hex.decode", &[s("6c6f72656d20697073756d")]),
            Ok(Some(s("lorem ipsum")))
        );
        assert_eq!(
            call("hex.decode", &[s("0x")]),
            err("encoding/hex: invalid byte: U+0078 'x'")
        );
        assert_eq!(
            call("hex.decode", &[s("abc")]),
            err("encoding/hex: odd length hex string")
        );
        assert_eq!(
            call("base64url.encode_no_pad", &[s("message")]),
            Ok(Some(s("bWVzc2FnZQ")))
        );
        assert_eq!(
            call("base64url.encode_no_pad", &[s("\u{ff}\u{fe}")]),
            Ok(Some(s("w7_Dvg")))
        );
    }
}
