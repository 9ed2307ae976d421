//! `regex.is_valid` and `regex.find_all_string_submatch_n`: Go's RE2 syntax, compiled and cached
//! by the host's regex builtins (one translation of Go's dialect, one cache).

use std::sync::Arc;

use super::{arg, boolean, int_arg, str_arg, Ctx, Fault, Out, MAX_ELEMS, MAX_STRING_BYTES};
use crate::value::Val;

/// Whether the operand is a string that compiles as a Go regular expression (else false).
pub(super) fn is_valid(a: &[&Val], _: &mut Ctx) -> Out {
    let ok = match arg(a, 0)? {
        Val::Str(s) => acgs_rego::builtins::compiled_regex(s).is_ok(),
        _ => false,
    };
    boolean(ok)
}

/// Go's `FindAllStringSubmatch(s, n)`: up to `n` matches (all when `n < 0`), each the match and
/// its groups (a group that took no part is `""`).
pub(super) fn find_all_string_submatch_n(a: &[&Val], _: &mut Ctx) -> Out {
    let (pattern, s, n) = (str_arg(a, 0)?, str_arg(a, 1)?, int_arg(a, 2)?);
    let re = acgs_rego::builtins::compiled_regex(pattern).map_err(Fault::Undefined)?;
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut elems = 0usize;
    let mut bytes = 0usize;
    for caps in re.captures_iter(s).take(limit) {
        let groups: Vec<Val> = caps
            .iter()
            .map(|g| Val::str(g.map_or("", |m| m.as_str())))
            .collect();
        elems = elems.saturating_add(groups.len() + 1);
        bytes = bytes.saturating_add(caps.get(0).map_or(0, |m| m.len()) + 1);
        if elems > MAX_ELEMS || bytes > MAX_STRING_BYTES {
            return Err(Fault::TooLarge("array"));
        }
        out.push(Val::Arr(Arc::new(groups)));
    }
    Ok(Some(Val::Arr(Arc::new(out))))
}
