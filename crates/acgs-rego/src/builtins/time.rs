//! Host builtins: time.*.

use super::BuiltinFn;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    match name {
        _ => None,
    }
}
