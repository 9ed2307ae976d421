//! Host builtins: sprintf, strings.*, indexof_n, regex.*, glob.quote_meta, units.*, semver.*, cast_*, numbers.range_step, object.subset, graph.reachable_paths, uuid.*, rand.intn.

use super::BuiltinFn;

pub(super) fn lookup(name: &str) -> Option<BuiltinFn> {
    match name {
        _ => None,
    }
}
