//! RFC 8785 JSON Canonicalization Scheme (JCS): the byte form of an audit event that its content
//! hash covers.
//!
//! - Objects: members sorted by the UTF-16 code units of their names; a name given twice is an
//!   error (I-JSON), not "last one wins".
//! - Strings: the escaping of ECMAScript `JSON.stringify`; lone surrogates are errors.
//! - Numbers: IEEE-754 doubles printed as ECMAScript `Number::toString`; NaN and the infinities
//!   are errors, and so are integers whose digits a double would change (see [`number`]).
//! - No whitespace; UTF-8 output.

mod check;
pub mod number;
mod parse;
mod string;

use serde_json::Value;

use crate::error::{Error, Result};
use parse::Node;

pub use number::{integer_value, write_double, write_integer};
pub use string::{cmp_utf16, write_string};

/// Nesting deeper than this is refused rather than recursed into.
pub const MAX_DEPTH: usize = 256;

/// The canonical form of a JSON text: parse (strictly), then serialise per RFC 8785.
pub fn canonicalize(raw: &[u8]) -> Result<Vec<u8>> {
    let node = parse::parse(raw)?;
    let mut out = Vec::with_capacity(raw.len());
    write_node(&mut out, &node)?;
    Ok(out)
}

/// The canonical form of a `serde_json::Value`.
pub fn canonicalize_value(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<()> {
    write_value_at(out, value, 0)
}

/// Whether `bytes` are exactly the canonical form of the JSON value they hold.
pub fn is_canonical(bytes: &[u8]) -> bool {
    check::scan(bytes).is_ok()
}

/// Ok when `bytes` are exactly the canonical form of the JSON value they hold. Otherwise the
/// error says why: `InvalidJson`, `DuplicateKey`, `InvalidString` or `NumberOutOfRange` when
/// no canonical form exists, `NotCanonical` when one exists but differs from `bytes`.
pub fn check_canonical(bytes: &[u8]) -> Result<()> {
    match check::scan(bytes) {
        Ok(()) => Ok(()),
        // The slow path runs only on failure: the full parser names the precise fault.
        Err(mismatch) => match canonicalize(bytes) {
            Err(e) => Err(e),
            Ok(_) => Err(Error::NotCanonical {
                offset: mismatch.offset,
                reason: mismatch.reason.into(),
            }),
        },
    }
}

fn write_node(out: &mut Vec<u8>, node: &Node) -> Result<()> {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Number(x) => write_double(out, *x)?,
        Node::String(s) => write_string(out, s),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, item)?;
            }
            out.push(b']');
        }
        Node::Object(members) => {
            out.push(b'{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_node(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_value_at(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidValue(format!(
            "nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_integer(out, i128::from(u))?;
            } else if let Some(i) = n.as_i64() {
                write_integer(out, i128::from(i))?;
            } else if let Some(x) = n.as_f64() {
                write_double(out, x)?;
            } else {
                return Err(Error::NumberOutOfRange(n.to_string()));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value_at(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| cmp_utf16(a.0, b.0));
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, name);
                out.push(b':');
                write_value_at(out, item, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}
