//! sprintf and the plain string builtins.

use std::fmt::Write as _;

use num_bigint::BigInt;

use super::gofmt::{self, Arg};
use super::{fail, int_operand, ok, operand, str_operand, type_err};
use crate::builtins::{BuiltinError, BuiltinResult, Context};
use crate::value::{Number, Value};

/// A value as OPA's `String()` prints it: Rego syntax with `", "` separators and Go quoting.
pub(super) fn rego_text(v: &Value) -> String {
    let mut out = String::new();
    write_rego(&mut out, v);
    out
}

fn write_rego(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(&gofmt::quote(s, false)),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_rego(out, e);
            }
            out.push(']');
        }
        Value::Set(s) if s.is_empty() => out.push_str("set()"),
        Value::Set(s) => {
            out.push('{');
            for (i, e) in s.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_rego(out, e);
            }
            out.push('}');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, e)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_rego(out, k);
                out.push_str(": ");
                write_rego(out, e);
            }
            out.push('}');
        }
    }
}

/// How OPA hands a Rego value to Go's `fmt`.
fn to_arg(v: &Value) -> Arg {
    match v {
        Value::Number(Number::Int(i)) => Arg::Int(*i),
        Value::Number(Number::Float(f)) => Arg::Float(*f),
        Value::Number(Number::Big(s)) => match s.parse::<BigInt>() {
            Ok(b) => Arg::Big(b),
            Err(_) => Arg::Str(s.clone(), "string"),
        },
        Value::String(s) => Arg::Str(s.clone(), "string"),
        other => Arg::Str(rego_text(other), "string"),
    }
}

pub(super) fn sprintf(args: &[Value], _: &Context) -> BuiltinResult {
    let format = str_operand(args, 1)?;
    let items = match operand(args, 2)? {
        Value::Array(a) => a,
        other => return Err(type_err(2, other, &["array"])),
    };
    let go_args: Vec<Arg> = items.iter().map(to_arg).collect();
    ok(Value::String(gofmt::sprintf(format, &go_args)))
}

/// OPA's `StringSliceOperand`: an array or set whose members are all strings.
fn string_members(v: &Value, pos: usize) -> Result<Vec<&str>, BuiltinError> {
    let items: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Set(s) => Box::new(s.iter()),
        other => return Err(type_err(pos, other, &["array", "set"])),
    };
    items
        .map(|e| match e {
            Value::String(s) => Ok(s.as_str()),
            other => Err(BuiltinError(format!(
                "operand {pos} must be {0} of strings but got {0} containing {1}",
                v.type_name(),
                other.type_name()
            ))),
        })
        .collect()
}

fn affix_operand(v: &Value, pos: usize) -> Result<Vec<&str>, BuiltinError> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(_) | Value::Set(_) => string_members(v, pos),
        other => Err(type_err(pos, other, &["string", "set", "array"])),
    }
}

fn any_affix_match(args: &[Value], suffix: bool) -> BuiltinResult {
    // Search strings are checked first so that their type errors win, as in OPA.
    let strs = affix_operand(operand(args, 1)?, 1)?;
    let bases = affix_operand(operand(args, 2)?, 2)?;
    let found = strs.iter().any(|s| {
        bases.iter().any(|b| {
            if suffix {
                s.ends_with(b)
            } else {
                s.starts_with(b)
            }
        })
    });
    ok(Value::Bool(found))
}

pub(super) fn any_prefix_match(args: &[Value], _: &Context) -> BuiltinResult {
    any_affix_match(args, false)
}

pub(super) fn any_suffix_match(args: &[Value], _: &Context) -> BuiltinResult {
    any_affix_match(args, true)
}

pub(super) fn count(args: &[Value], _: &Context) -> BuiltinResult {
    let s = str_operand(args, 1)?;
    let sub = str_operand(args, 2)?;
    // Go counts an empty needle once per rune boundary.
    let n = if sub.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(sub).count()
    };
    ok(Value::int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// `strings.split_n(s, delim, n)`: the first `n` fields of the split when `n >= 0`, the last
/// `-n` fields when negative (OPA's semantics, not Go's `SplitN` remainder rule).
pub(super) fn split_n(args: &[Value], _: &Context) -> BuiltinResult {
    let s = str_operand(args, 1)?;
    let delim = str_operand(args, 2)?;
    let n = int_operand(args, 3)?;
    // An empty delimiter splits into characters, as Go's strings.Split does.
    let parts: Vec<&str> = if delim.is_empty() {
        s.char_indices()
            .map(|(i, c)| s.get(i..i + c.len_utf8()).unwrap_or_default())
            .collect()
    } else {
        s.split(delim).collect()
    };
    let len = parts.len();
    let keep: &[&str] = if n >= 0 {
        parts
            .get(..len.min(usize::try_from(n).unwrap_or(usize::MAX)))
            .unwrap_or_default()
    } else {
        let back = usize::try_from(n.unsigned_abs())
            .unwrap_or(usize::MAX)
            .min(len);
        parts.get(len - back..).unwrap_or_default()
    };
    ok(Value::Array(keep.iter().map(|p| Value::str(*p)).collect()))
}

/// Every (overlapping) match position, counted in runes as OPA does.
pub(super) fn indexof_n(args: &[Value], _: &Context) -> BuiltinResult {
    let s = str_operand(args, 1)?;
    let sub = str_operand(args, 2)?;
    if sub.is_empty() {
        return fail("empty search character");
    }
    let found = s
        .char_indices()
        .enumerate()
        .filter(|(_, (byte_at, _))| s.get(*byte_at..).is_some_and(|rest| rest.starts_with(sub)))
        .map(|(rune_at, _)| Value::int(i64::try_from(rune_at).unwrap_or(i64::MAX)))
        .collect();
    ok(Value::Array(found))
}

pub(super) fn glob_quote_meta(args: &[Value], _: &Context) -> BuiltinResult {
    let s = str_operand(args, 1)?;
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\' | '[' | ']' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    ok(Value::String(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    #[test]
    fn split_n_keeps_the_first_or_last_fields() {
        let ctx = Context { now_ns: 0 };
        let call = |s: &str, d: &str, n: i64| {
            let out = super::split_n(&[Value::str(s), Value::str(d), Value::int(n)], &ctx)
                .unwrap()
                .unwrap();
            out.to_json_string()
        };
        assert_eq!(call("a,b,c", ",", 2), r#"["a","b"]"#);
        assert_eq!(call("a,b,c", ",", 0), "[]");
        assert_eq!(call("a,b,c", ",", 9), r#"["a","b","c"]"#);
        assert_eq!(call("a,b,c", ",", -1), r#"["c"]"#);
        assert_eq!(call("a,b,c", ",", -9), r#"["a","b","c"]"#);
        assert_eq!(call("héy", "", 2), r#"["h","é"]"#);
        assert_eq!(call("", ",", 5), r#"[""]"#);
    }

    use super::*;

    fn call(f: fn(&[Value], &Context) -> BuiltinResult, args: &str) -> BuiltinResult {
        let Value::Array(a) = Value::parse_rego(args).unwrap() else {
            unreachable!()
        };
        f(&a, &Context { now_ns: 0 })
    }

    fn val(s: &str) -> Option<Value> {
        Some(Value::parse_rego(s).unwrap())
    }

    #[test]
    fn sprintf_like_opa() {
        assert_eq!(
            call(sprintf, r#"["hi %v", [["there", 5, 3.14]]]"#).unwrap(),
            val(r#""hi [\"there\", 5, 3.14]""#)
        );
        assert_eq!(
            call(sprintf, r#"["hi %s", [true]]"#).unwrap(),
            val(r#""hi true""#)
        );
        assert_eq!(
            call(sprintf, r#"["%s", [123456789123456789123]]"#).unwrap(),
            val(r#""123456789123456789123""#)
        );
        assert_eq!(
            call(sprintf, r#"["%f", [1e2]]"#).unwrap(),
            val(r#""100.000000""#)
        );
        assert_eq!(
            call(
                sprintf,
                r#"["%v", [{"b": 1, "a": {3, 2}, "c": set(), "d": "x\ty"}]]"#
            )
            .unwrap(),
            val(r#""{\"a\": {2, 3}, \"b\": 1, \"c\": set(), \"d\": \"x\\ty\"}""#)
        );
        assert_eq!(call(sprintf, r#"["hi", []]"#).unwrap(), val(r#""hi""#));
        assert!(call(sprintf, r#"["hi", {}]"#).is_err());
    }

    #[test]
    fn affix_matches() {
        assert_eq!(
            call(any_prefix_match, r#"["foobar", ["bar", "foo"]]"#).unwrap(),
            val("true")
        );
        assert_eq!(
            call(any_suffix_match, r#"[{"xbar", "y"}, "bar"]"#).unwrap(),
            val("true")
        );
        assert_eq!(
            call(any_prefix_match, r#"[[], "a"]"#).unwrap(),
            val("false")
        );
        assert_eq!(
            call(any_suffix_match, r#"[["a", 1], "a"]"#).unwrap_err().0,
            "operand 1 must be array of strings but got array containing number"
        );
        assert_eq!(
            call(any_prefix_match, r#"["a", 1]"#).unwrap_err().0,
            "operand 2 must be one of {string, set, array} but got number"
        );
        assert_eq!(
            call(any_prefix_match, r#"["a", ["a", 1]]"#).unwrap_err().0,
            "operand 2 must be array of strings but got array containing number"
        );
    }

    #[test]
    fn count_and_indexof_n() {
        assert_eq!(call(count, r#"["cheese", "e"]"#).unwrap(), val("3"));
        assert_eq!(call(count, r#"["dummy", ""]"#).unwrap(), val("6"));
        assert_eq!(call(count, r#"["", ""]"#).unwrap(), val("1"));
        assert_eq!(call(count, r#"["11111", "11"]"#).unwrap(), val("2"));
        assert_eq!(
            call(indexof_n, r#"["dogcatdogcat", "cat"]"#).unwrap(),
            val("[3, 9]")
        );
        assert_eq!(call(indexof_n, r#"["aaa", "aa"]"#).unwrap(), val("[0, 1]"));
        assert_eq!(
            call(
                indexof_n,
                "[\"\u{1F607}\u{1F600}\u{1F607}\u{1F600}\", \"\u{1F600}\"]"
            )
            .unwrap(),
            val("[1, 3]")
        );
        assert_eq!(
            call(indexof_n, r#"["x", ""]"#).unwrap_err().0,
            "empty search character"
        );
        assert_eq!(
            call(glob_quote_meta, r#"["*.github.com"]"#).unwrap(),
            val(r#""\\*.github.com""#)
        );
    }
}
