//! Host builtins: sprintf, strings.*, indexof_n, regex.*, glob.match, glob.quote_meta, units.*,
//! semver.*, cast_*, numbers.range_step, object.subset, graph.reachable_paths, uuid.*, rand.intn.

use super::{BuiltinError, BuiltinFn, BuiltinResult};
use crate::value::Value;

mod glob;
mod gofmt;
mod goregex;
mod patterns;
mod template;
mod text;
mod units;
mod values;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    let f: BuiltinFn = match name {
        "sprintf" => text::sprintf,
        "strings.any_prefix_match" => text::any_prefix_match,
        "strings.any_suffix_match" => text::any_suffix_match,
        "strings.count" => text::count,
        "strings.split_n" => text::split_n,
        "indexof_n" => text::indexof_n,
        "strings.render_template" => template::render_template,
        "glob.quote_meta" => text::glob_quote_meta,
        "regex.match" => patterns::is_match,
        "glob.match" => glob::glob_match,
        "regex.find_n" => patterns::find_n,
        "regex.split" => patterns::split,
        "regex.replace" => patterns::replace,
        "regex.template_match" => patterns::template_match,
        "regex.globs_match" => patterns::globs_match,
        "units.parse" => units::parse,
        "units.parse_bytes" => units::parse_bytes,
        "cast_array" => values::cast_array,
        "cast_boolean" => values::cast_boolean,
        "cast_null" => values::cast_null,
        "cast_object" => values::cast_object,
        "cast_set" => values::cast_set,
        "cast_string" => values::cast_string,
        "numbers.range_step" => values::numbers_range_step,
        "object.subset" => values::object_subset,
        "graph.reachable_paths" => values::reachable_paths,
        "semver.compare" => values::semver_compare,
        "semver.is_valid" => values::semver_is_valid,
        "uuid.rfc4122" => values::uuid_rfc4122,
        "uuid.parse" => values::uuid_parse,
        "rand.intn" => values::rand_intn,
        _ => return None,
    };
    Some(f)
}

/// A Go regular expression compiled as the regex builtins compile it (Go's RE2 dialect), from
/// their cache: for the plan evaluator's regex builtins, so both share one translation and cache.
pub fn compiled_regex(pattern: &str) -> Result<std::sync::Arc<regex::Regex>, String> {
    patterns::cached(pattern).map_err(|e| e.0)
}

fn fail<T>(msg: impl Into<String>) -> Result<T, BuiltinError> {
    Err(BuiltinError(msg.into()))
}

/// The value OPA names "operand `pos`" (1-based).
fn operand(args: &[Value], pos: usize) -> Result<&Value, BuiltinError> {
    args.get(pos.wrapping_sub(1))
        .ok_or_else(|| BuiltinError(format!("operand {pos} missing")))
}

fn type_err(pos: usize, got: &Value, expected: &[&str]) -> BuiltinError {
    if let [one] = expected {
        BuiltinError(format!(
            "operand {pos} must be {one} but got {}",
            got.type_name()
        ))
    } else {
        BuiltinError(format!(
            "operand {pos} must be one of {{{}}} but got {}",
            expected.join(", "),
            got.type_name()
        ))
    }
}

fn str_operand(args: &[Value], pos: usize) -> Result<&str, BuiltinError> {
    match operand(args, pos)? {
        Value::String(s) => Ok(s),
        other => Err(type_err(pos, other, &["string"])),
    }
}

/// OPA's `IntOperand`: integral numbers that fit a machine int.
fn int_operand(args: &[Value], pos: usize) -> Result<i64, BuiltinError> {
    match operand(args, pos)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            BuiltinError(format!(
                "operand {pos} must be integer number but got floating-point number"
            ))
        }),
        other => Err(type_err(pos, other, &["number"])),
    }
}

fn ok(v: Value) -> BuiltinResult {
    Ok(Some(v))
}
