//! `graph.reachable`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::{arg, elems, Ctx, Out};
use crate::value::Val;

/// The nodes of `graph` (an object of node to array or set of neighbours) reachable from the
/// initial nodes (an array or a set), those included; only nodes that are keys of the graph
/// count as reached, as in OPA.
pub(super) fn reachable(a: &[&Val], _: &mut Ctx) -> Out {
    let (Val::Obj(graph), initial) = (arg(a, 0)?, arg(a, 1)?) else {
        return Ok(None);
    };
    let Some(start) = elems(initial) else {
        return Ok(None);
    };
    let mut queue: VecDeque<&Val> = start.collect();
    // Every node queued once: the result is the same as OPA's queue, which may revisit.
    let mut seen: BTreeSet<&Val> = queue.iter().copied().collect();
    let mut reached: BTreeSet<Val> = BTreeSet::new();
    while let Some(node) = queue.pop_front() {
        let Some(edges) = graph.get(node) else {
            continue;
        };
        reached.insert(node.clone());
        if let Some(next) = elems(edges) {
            for n in next {
                if seen.insert(n) {
                    queue.push_back(n);
                }
            }
        }
    }
    Ok(Some(Val::Set(Arc::new(reached))))
}
