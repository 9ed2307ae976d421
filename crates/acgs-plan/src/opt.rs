//! Rewrites of the lowered plan that keep its meaning and run fewer statements.
//!
//! OPA's planner copies values from local to local freely (an argument into a fresh local
//! before each use, a result into another before it is tested) and tests a builtin's result
//! with a separate statement. A third of a constitution decision's statements were such
//! copies and tests. Two rewrites, run on each function and plan body at load:
//!
//! - **Copy propagation.** `AssignVar(s -> t)` is dropped and every read of `t` reads `s`
//!   when every write of `t` is such a copy from the same `s`, every read of `t` comes later
//!   in the block of one of those copies (so it sees a copy's value), and `s` is written only
//!   before each copy in that copy's block (so `s` still holds that value wherever `t` is
//!   read). Parameters, the return local and a plan's input and data are never dropped.
//! - **Test fusion.** A builtin call whose result local `r` is read only by a
//!   `NotEqual(r, false)` right after it becomes one statement that passes when the builtin is
//!   defined and not `false`; a type test (`is_string(x)`) becomes [`Stmt::TypeIs`].
//!
//! Either rewrite is skipped for a local it cannot prove safe; nothing else changes.

use std::collections::{BTreeMap, BTreeSet};

use crate::builtins::Impl;
use crate::program::{Block, Op, Stmt};
use crate::value::Val;

/// Where a statement sits: (block id, position) from the body's top block down. Statement `k`
/// of a block is at position `k + 1`; position 0 is the start of a block, where a Scan writes
/// its key and value before each run of its body.
type Chain = Vec<(u32, u32)>;

/// Rounds of copy propagation (a chain of copies resolves one link per round).
const MAX_ROUNDS: usize = 16;

/// Rewrites `blocks` (a function's or a plan's body). `fixed`: locals written on entry or read
/// on exit (parameters, the return local, a plan's input and data).
pub(crate) fn optimise(blocks: &mut [Block], fixed: &[u32]) {
    for _ in 0..MAX_ROUNDS {
        if !propagate_copies(blocks, fixed) {
            break;
        }
    }
    fuse_tests(blocks, fixed);
}

#[derive(Default)]
struct Uses {
    reads: BTreeMap<u32, Vec<Chain>>,
    writes: BTreeMap<u32, Vec<Chain>>,
    /// Copies `AssignVar(Local(s), t)`: t to (where, s).
    copies: BTreeMap<u32, Vec<(Chain, u32)>>,
    /// `NotEqual(Local(r), false)` right after a builtin call writing `r`: count per `r`.
    tests: BTreeMap<u32, usize>,
}

fn analyse(blocks: &[Block]) -> Uses {
    let mut uses = Uses::default();
    let mut next = 0;
    let mut chain = Vec::new();
    for b in blocks {
        collect(b, &mut chain, &mut next, &mut uses);
    }
    uses
}

fn collect(block: &Block, chain: &mut Chain, next: &mut u32, u: &mut Uses) {
    let id = *next;
    *next += 1;
    let mut prev: Option<&Stmt> = None;
    for (k, s) in block.stmts.iter().enumerate() {
        chain.push((id, u32::try_from(k).unwrap_or(u32::MAX - 1) + 1));
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        own_uses(s, &mut reads, &mut writes);
        for r in reads {
            u.reads.entry(r).or_default().push(chain.clone());
        }
        for w in writes {
            u.writes.entry(w).or_default().push(chain.clone());
        }
        if let Stmt::AssignVar {
            source: Op::Local(src),
            target,
        } = s
        {
            u.copies
                .entry(*target)
                .or_default()
                .push((chain.clone(), *src));
        }
        if let Some(r) = prev.and_then(|p| test_pair(p, s)) {
            *u.tests.entry(r).or_default() += 1;
        }
        match s {
            Stmt::Block(bs) => {
                for b in bs {
                    collect(b, chain, next, u);
                }
            }
            Stmt::Not(b) | Stmt::With { block: b, .. } => collect(b, chain, next, u),
            Stmt::Scan {
                key, value, block, ..
            } => {
                chain.push((*next, 0));
                for w in [*key, *value] {
                    u.writes.entry(w).or_default().push(chain.clone());
                }
                chain.pop();
                collect(block, chain, next, u);
            }
            _ => {}
        }
        chain.pop();
        prev = Some(s);
    }
}

/// `r` when `call` is a builtin call writing `r` and `test` is `NotEqual(Local(r), false)`.
fn test_pair(call: &Stmt, test: &Stmt) -> Option<u32> {
    match (call, test) {
        (
            Stmt::CallBuiltin {
                builtin, result, ..
            },
            Stmt::NotEqual(Op::Local(r), Op::Const(Val::Bool(false))),
        ) if r == result && !matches!(builtin.imp, Impl::Void) => Some(*r),
        _ => None,
    }
}

/// The locals a statement reads and writes itself (its nested blocks aside; a Scan's key and
/// value are written at its body's start, see [`collect`]).
fn own_uses(s: &Stmt, reads: &mut Vec<u32>, writes: &mut Vec<u32>) {
    let op = |o: &Op, reads: &mut Vec<u32>| {
        if let Op::Local(l) = o {
            reads.push(*l);
        }
    };
    match s {
        Stmt::ArrayAppend { value, array } => {
            op(value, reads);
            reads.push(*array);
            writes.push(*array);
        }
        Stmt::AssignInt { target, .. }
        | Stmt::MakeArray(target)
        | Stmt::MakeNull(target)
        | Stmt::MakeObject(target)
        | Stmt::MakeSet(target)
        | Stmt::MakeValue { target, .. }
        | Stmt::ResetLocal(target) => writes.push(*target),
        Stmt::AssignVarOnce { source, target, .. } => {
            op(source, reads);
            reads.push(*target);
            writes.push(*target);
        }
        Stmt::AssignVar { source, target } => {
            op(source, reads);
            writes.push(*target);
        }
        Stmt::Block(_) | Stmt::Break(_) | Stmt::Nop | Stmt::Not(_) => {}
        Stmt::CallDynamic { args, result, path } => {
            for o in args.iter().chain(path) {
                op(o, reads);
            }
            writes.push(*result);
        }
        Stmt::CallFunc { args, result, .. } | Stmt::CallBuiltin { args, result, .. } => {
            for o in args {
                op(o, reads);
            }
            writes.push(*result);
        }
        Stmt::Test { args, .. } => {
            for o in args {
                op(o, reads);
            }
        }
        Stmt::Dot {
            source,
            key,
            target,
        } => {
            op(source, reads);
            op(key, reads);
            writes.push(*target);
        }
        Stmt::Equal(a, b) | Stmt::NotEqual(a, b) => {
            op(a, reads);
            op(b, reads);
        }
        Stmt::TypeIs(o, _) => op(o, reads),
        Stmt::IsDefined(l)
        | Stmt::IsUndefined(l)
        | Stmt::ResultSetAdd(l)
        | Stmt::ReturnLocal(l) => {
            reads.push(*l);
        }
        Stmt::Len { source, target } => {
            op(source, reads);
            writes.push(*target);
        }
        Stmt::ObjectInsertOnce {
            key, value, object, ..
        }
        | Stmt::ObjectInsert { key, value, object } => {
            op(key, reads);
            op(value, reads);
            reads.push(*object);
            writes.push(*object);
        }
        Stmt::ObjectMerge { a, b, target } => {
            reads.push(*a);
            reads.push(*b);
            writes.push(*target);
        }
        Stmt::Scan { source, .. } => reads.push(*source),
        Stmt::SetAdd { value, set } => {
            op(value, reads);
            reads.push(*set);
            writes.push(*set);
        }
        Stmt::With { local, value, .. } => {
            op(value, reads);
            reads.push(*local);
            writes.push(*local);
        }
    }
}

/// The block and position a statement's chain ends in.
fn place(c: &Chain) -> (u32, u32) {
    c.last().copied().unwrap_or((u32::MAX, 0))
}

/// One round of copy propagation; whether anything changed.
fn propagate_copies(blocks: &mut [Block], fixed: &[u32]) -> bool {
    let u = analyse(blocks);
    let mut chosen: BTreeMap<u32, u32> = BTreeMap::new();
    let mut sources: BTreeSet<u32> = BTreeSet::new();
    for (&t, copies) in &u.copies {
        let Some(&(_, s)) = copies.first() else {
            continue;
        };
        if fixed.contains(&t)
            || copies.iter().any(|(_, x)| *x != s)
            || u.writes.get(&t).map_or(0, Vec::len) != copies.len()
            // Chains resolve over rounds: a local is not both dropped and a source dropped into.
            || chosen.contains_key(&s)
            || sources.contains(&t)
        {
            continue;
        }
        if s != t {
            let after_a_copy = |r: &Chain| {
                copies.iter().any(|(c, _)| {
                    let (b, i) = place(c);
                    r.iter().any(|&(rb, j)| rb == b && j > i)
                })
            };
            if !u.reads.get(&t).is_none_or(|rs| rs.iter().all(after_a_copy)) {
                continue;
            }
            let source_settled = copies.iter().all(|(c, _)| {
                let (b, i) = place(c);
                u.writes
                    .get(&s)
                    .is_none_or(|ws| ws.iter().all(|w| w.iter().any(|&(wb, j)| wb == b && j < i)))
            });
            if !source_settled {
                continue;
            }
        }
        chosen.insert(t, s);
        sources.insert(s);
    }
    if chosen.is_empty() {
        return false;
    }
    for b in blocks.iter_mut() {
        rewrite_copies(b, &chosen);
    }
    true
}

fn rewrite_copies(block: &mut Block, chosen: &BTreeMap<u32, u32>) {
    block.stmts.retain(|s| {
        !matches!(s, Stmt::AssignVar { source: Op::Local(s), target }
            if chosen.get(target) == Some(s))
    });
    for s in &mut block.stmts {
        rename_reads(s, chosen);
        for b in nested_mut(s) {
            rewrite_copies(b, chosen);
        }
    }
}

fn nested_mut(s: &mut Stmt) -> Vec<&mut Block> {
    match s {
        Stmt::Block(bs) => bs.iter_mut().collect(),
        Stmt::Not(b) | Stmt::With { block: b, .. } | Stmt::Scan { block: b, .. } => vec![b],
        _ => Vec::new(),
    }
}

/// Renames the locals a statement only reads (a dropped local is never written but by the
/// copies removed, so it is never in a place that is also written).
fn rename_reads(s: &mut Stmt, map: &BTreeMap<u32, u32>) {
    let slot = |l: &mut u32| {
        if let Some(&to) = map.get(l) {
            *l = to;
        }
    };
    let op = |o: &mut Op| {
        if let Op::Local(l) = o {
            if let Some(&to) = map.get(l) {
                *l = to;
            }
        }
    };
    match s {
        Stmt::ArrayAppend { value, .. } | Stmt::SetAdd { value, .. } => op(value),
        Stmt::AssignVarOnce { source, .. } | Stmt::AssignVar { source, .. } => op(source),
        Stmt::CallDynamic { args, path, .. } => {
            args.iter_mut().for_each(op);
            path.iter_mut().for_each(op);
        }
        Stmt::CallFunc { args, .. } | Stmt::CallBuiltin { args, .. } | Stmt::Test { args, .. } => {
            args.iter_mut().for_each(op);
        }
        Stmt::Dot { source, key, .. } => {
            op(source);
            op(key);
        }
        Stmt::Equal(a, b) | Stmt::NotEqual(a, b) => {
            op(a);
            op(b);
        }
        Stmt::TypeIs(o, _) | Stmt::Len { source: o, .. } => op(o),
        Stmt::IsDefined(l)
        | Stmt::IsUndefined(l)
        | Stmt::ResultSetAdd(l)
        | Stmt::ReturnLocal(l) => {
            slot(l);
        }
        Stmt::ObjectInsertOnce { key, value, .. } | Stmt::ObjectInsert { key, value, .. } => {
            op(key);
            op(value);
        }
        Stmt::ObjectMerge { a, b, .. } => {
            slot(a);
            slot(b);
        }
        Stmt::Scan { source, .. } => slot(source),
        Stmt::With { value, .. } => op(value),
        Stmt::AssignInt { .. }
        | Stmt::Block(_)
        | Stmt::Break(_)
        | Stmt::MakeArray(_)
        | Stmt::MakeNull(_)
        | Stmt::MakeObject(_)
        | Stmt::MakeSet(_)
        | Stmt::MakeValue { .. }
        | Stmt::Nop
        | Stmt::Not(_)
        | Stmt::ResetLocal(_) => {}
    }
}

/// Fuses each builtin call whose result is read only by the `NotEqual(r, false)` after it.
fn fuse_tests(blocks: &mut [Block], fixed: &[u32]) {
    let u = analyse(blocks);
    let fusable: BTreeSet<u32> = u
        .tests
        .iter()
        .filter(|&(r, &n)| !fixed.contains(r) && u.reads.get(r).map_or(0, Vec::len) == n)
        .map(|(&r, _)| r)
        .collect();
    if fusable.is_empty() {
        return;
    }
    for b in blocks.iter_mut() {
        fuse_block(b, &fusable);
    }
}

fn fuse_block(block: &mut Block, fusable: &BTreeSet<u32>) {
    let stmts = std::mem::take(&mut block.stmts);
    let mut out: Vec<Stmt> = Vec::with_capacity(stmts.len());
    for s in stmts {
        let fuse = out
            .last()
            .and_then(|p| test_pair(p, &s))
            .is_some_and(|r| fusable.contains(&r));
        if fuse {
            if let Some(Stmt::CallBuiltin { builtin, args, .. }) = out.pop() {
                out.push(match (builtin.test, args.as_slice()) {
                    (Some(kind), [arg]) => Stmt::TypeIs(arg.clone(), kind),
                    _ => Stmt::Test { builtin, args },
                });
                continue;
            }
        }
        out.push(s);
    }
    block.stmts = out;
    for s in &mut block.stmts {
        for b in nested_mut(s) {
            fuse_block(b, fusable);
        }
    }
}
