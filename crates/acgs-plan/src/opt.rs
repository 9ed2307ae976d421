//! Rewrites of the lowered plan that keep its meaning and run fewer statements.
//!
//! OPA's planner copies values from local to local freely (an argument into a fresh local
//! before each use, a result into another before it is tested), reuses a local for unrelated
//! values in different rule bodies, and tests a builtin's result with a separate statement.
//! A third of a constitution decision's statements were such copies and tests. The rewrites,
//! run on each function and plan body at load, each decided for one statement at a time:
//!
//! - **Copy and constant propagation.** A copy `t := s` (or a constant `t := c`) is dropped
//!   when every read of `t` it can reach comes later in its own block with nothing writing `t`
//!   or `s` in between (those reads then read `s`, or `c` where a value can stand), and every
//!   other read of `t` is preceded by a write that overwrites `t` with the copy not in between.
//! - **Literals.** A collection made and then filled with constants only is one constant.
//! - **Unseen writes.** A statement that only writes a local no read can see is dropped.
//! - **Test fusion.** A builtin call whose result `r` only reaches the `NotEqual(r, false)`
//!   right after it becomes one statement that passes when the builtin is defined and not
//!   `false`; a type test (`is_string(x)`) becomes [`Stmt::TypeIs`].
//! - **Ends.** `IsDefined(x)` before a block's final `AssignVarOnce(x -> y)`, and a function's
//!   final `ReturnLocal` of its return local, change nothing and are dropped.
//! - **Rule values.** A one-body function assigns its return local directly, not through a
//!   local copied in the next block (see [`forward_rule_value`]).
//! - **Tidying.** Empty blocks of a `Block` statement, and `IsDefined(x)` right before a
//!   statement that fails anyway on an undefined `x`, are dropped (see [`tidy`]).
//!
//! Positions are chains of (block, position) from the body's top block down, which is enough
//! for plans: control only moves forward through a block, into nested blocks, or out of them
//! (a loop body restarts from its start); and a `Block` statement starts each of its blocks in
//! turn, so what opens one block (before anything that can fail) runs before the later ones.
//! A rewrite it cannot prove safe is not made.
//!
//! The checks look at every write of a local for each read of it, so their work grows faster
//! than the plan: a hostile plan reusing one local thousands of times would keep a load busy
//! for hours. Each program's rewrites share a [`Budget`] of steps; once it is spent, every
//! check answers "not safe" at once, and the bodies not yet rewritten run as written.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use crate::builtins::Impl;
use crate::program::{Block, Op, Stmt};
use crate::value::Val;

/// Where a statement sits: (block id, position) from the body's top block down. Statement `k`
/// of a block is at position `k + 1`; position 0 is the start of a block, where a Scan writes
/// its key and value before each run of its body.
type Chain = Vec<(u32, u32)>;

/// Rounds of copy propagation: each drops at most one copy per local (a local reused in many
/// rule bodies takes a round per body), so that no drop relies on a write dropped with it.
const MAX_ROUNDS: usize = 64;

/// Steps the rewrites of one program may take at load (a position recorded, a write looked at
/// for a read; ~10 ns each). The shipped bundles take at most about 2% of it (the constitution
/// ~2.0M, most of it optimising callers again after inlining, see [`crate::inline`]).
pub(crate) const BUDGET: u64 = 100_000_000;

/// What is left of a program's [`BUDGET`]; shared by the rewrites of all its bodies.
pub(crate) struct Budget(Cell<u64>);

impl Budget {
    pub(crate) fn new(steps: u64) -> Self {
        Budget(Cell::new(steps))
    }

    /// Takes `n` steps; whether they were there to take (once spent, nothing is left).
    fn spend(&self, n: usize) -> bool {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match self.0.get().checked_sub(n) {
            Some(left) => {
                self.0.set(left);
                true
            }
            None => {
                self.0.set(0);
                false
            }
        }
    }

    pub(crate) fn spent(&self) -> bool {
        self.0.get() == 0
    }

    pub(crate) fn left(&self) -> u64 {
        self.0.get()
    }
}

/// Rewrites `blocks` (a function's or a plan's body). `fixed`: locals written on entry or read
/// on exit (parameters, the return local, a plan's input and data).
pub(crate) fn optimise(blocks: &mut [Block], fixed: &[u32], ret: Option<u32>, budget: &Budget) {
    if let Some(ret) = ret {
        forward_rule_value(blocks, ret, fixed);
    }
    for _ in 0..MAX_ROUNDS {
        if budget.spent() {
            break;
        }
        let folded = fold_literals(blocks);
        let propagated = propagate_copies(blocks, fixed, budget);
        let dropped = drop_dead_writes(blocks, fixed, budget);
        if !(folded || propagated || dropped) {
            break;
        }
    }
    fuse_tests(blocks, fixed, budget);
    trim_ends(blocks, ret);
    for b in blocks.iter_mut() {
        tidy(b);
    }
}

/// A function of one rule body computes its value into a local `t` in one block and copies it
/// to the return local in the next (`AssignVarOnce(x -> t)`, then a block of just
/// `AssignVarOnce(t -> ret)`), with `t` reset before. When nothing else touches `t` or `ret`,
/// the body assigns `ret` itself: on a fresh frame both are undefined until then, and each is
/// assigned at most once (top-level blocks run once, in order).
fn forward_rule_value(blocks: &mut [Block], ret: u32, fixed: &[u32]) {
    for k in 0..blocks.len().saturating_sub(1) {
        let (Some(here), Some(next)) = (blocks.get(k), blocks.get(k + 1)) else {
            continue;
        };
        let t = match (here.stmts.last(), next.stmts.as_slice()) {
            (
                Some(Stmt::AssignVarOnce { target, .. }),
                [Stmt::AssignVarOnce {
                    source: Op::Local(from),
                    target: to,
                    ..
                }],
            ) if from == target && *to == ret && *target != ret && !fixed.contains(target) => {
                *target
            }
            _ => continue,
        };
        let resets = here
            .stmts
            .iter()
            .filter(|s| matches!(s, Stmt::ResetLocal(x) if *x == t))
            .count();
        let touching = |l: u32| blocks.iter().map(|b| touching_in(b, l)).sum::<usize>();
        if touching(t) != resets + 2 || touching(ret) != 1 {
            continue;
        }
        if let Some(here) = blocks.get_mut(k) {
            here.stmts
                .retain(|s| !matches!(s, Stmt::ResetLocal(x) if *x == t));
            if let Some(Stmt::AssignVarOnce { target, .. }) = here.stmts.last_mut() {
                *target = ret;
            }
        }
        if let Some(next) = blocks.get_mut(k + 1) {
            next.stmts.clear();
        }
    }
}

/// Statements in `b` (nested ones included) that read or write `l`.
fn touching_in(b: &Block, l: u32) -> usize {
    b.stmts
        .iter()
        .map(|s| {
            let scan = matches!(s, Stmt::Scan { key, value, .. } if *key == l || *value == l);
            usize::from(touches(s, l) || scan)
                + nested(s).iter().map(|b| touching_in(b, l)).sum::<usize>()
        })
        .sum()
}

/// Small clean-ups that change nothing but the statements run: a `Block` statement's empty
/// blocks (and the statement, once none is left) go, and so does `IsDefined(x)` right before a
/// statement that fails anyway when `x` is undefined (a comparison, type test, dot or builtin
/// reading `x`).
fn tidy(block: &mut Block) {
    for s in &mut block.stmts {
        if let Stmt::Block(bs) = s {
            bs.retain(|b| !b.stmts.is_empty());
        }
        for b in nested_mut(s) {
            tidy(b);
        }
    }
    block
        .stmts
        .retain(|s| !matches!(s, Stmt::Block(bs) if bs.is_empty()));
    let stmts = std::mem::take(&mut block.stmts);
    let mut out: Vec<Stmt> = Vec::with_capacity(stmts.len());
    for s in stmts {
        if let Some(Stmt::IsDefined(x)) = out.last() {
            if fails_undefined(&s, *x) {
                out.pop();
            }
        }
        out.push(s);
    }
    block.stmts = out;
}

/// Whether `s` fails, writing nothing, when local `x` is undefined.
fn fails_undefined(s: &Stmt, x: u32) -> bool {
    let is_x = |o: &Op| matches!(o, Op::Local(l) if *l == x);
    match s {
        Stmt::Equal(a, b) | Stmt::NotEqual(a, b) => is_x(a) || is_x(b),
        Stmt::TypeIs(o, _) => is_x(o),
        Stmt::Dot { source, key, .. } => is_x(source) || is_x(key),
        Stmt::CallBuiltin { builtin, args, .. } | Stmt::Test { builtin, args } => {
            !matches!(builtin.imp, Impl::Void) && args.iter().any(is_x)
        }
        _ => false,
    }
}

struct Write {
    at: Chain,
    /// Whether, once the statement has run, the local holds what it wrote whatever it held
    /// before (an `AssignVarOnce` may keep the old value, an append changes it in place).
    kills: bool,
}

#[derive(Default)]
struct Uses {
    /// Per block, how many statements at its start never fail (resets, makes, copies): a
    /// statement just after them runs whenever the block does.
    sure: BTreeMap<u32, u32>,
    reads: BTreeMap<u32, Vec<Chain>>,
    /// The reads of a local in a place that names a local (`IsDefined(l)`, a Scan's source):
    /// a constant cannot stand there.
    slot_reads: BTreeSet<(u32, Chain)>,
    writes: BTreeMap<u32, Vec<Write>>,
    /// Copies `t := s` and constants `t := c`, in program order: (where, t, what).
    copies: Vec<(Chain, u32, Op)>,
    /// Statements that only write a local (and never fail): (where, local).
    pure_writes: Vec<(Chain, u32)>,
    /// A builtin call writing `r` and the `NotEqual(r, false)` right after it: (call, test, r).
    tests: Vec<(Chain, Chain, u32)>,
}

impl Uses {
    /// Whether the value `t` gets at `from` cannot reach the read at `read`: a write that
    /// overwrites `t` (other than `from`) comes before the read in one of its blocks, and
    /// `from` does not lie between the two. `false` (not proved) once the budget is spent.
    fn shadowed(&self, t: u32, from: &Chain, read: &Chain, budget: &Budget) -> bool {
        self.writes.get(&t).is_some_and(|ws| {
            ws.iter().any(|w| {
                if !budget.spend(w.at.len()) {
                    return false;
                }
                if !w.kills || w.at == *from {
                    return false;
                }
                let (b, i) = place(&w.at);
                match pos_in(read, b) {
                    Some(j) if j > i => !pos_in(from, b).is_some_and(|k| i < k && k <= j),
                    _ => self.runs_before(&w.at, read, from),
                }
            })
        })
    }

    /// Whether the write at `w`, among the statements that start one block of a `Block`
    /// statement, runs before `read` in a later block of the same statement every time, with
    /// `from` outside that statement: a `Block` statement starts each of its blocks in turn
    /// (a break that leaves it skips the read too).
    fn runs_before(&self, w: &Chain, read: &Chain, from: &Chain) -> bool {
        let (Some(&(block, i)), Some(parent)) =
            (w.last(), w.len().checked_sub(2).and_then(|n| w.get(n)))
        else {
            return false;
        };
        if i == 0 || i - 1 > self.sure.get(&block).copied().unwrap_or(0) {
            return false;
        }
        // Blocks are numbered in order, a block's nested ones before its next sibling: the
        // read's block under the same statement is a later sibling when its number is larger
        // (under a Scan, Not or With there is only one block, `block` itself).
        let later = read
            .iter()
            .position(|e| e == parent)
            .and_then(|k| read.get(k + 1))
            .is_some_and(|&(b, _)| b > block);
        later && !from.contains(parent)
    }

    /// Whether a write of `l` lies after position `i` of block `b` and at or before `j`.
    /// `true` (not disproved) once the budget is spent.
    fn written_between(&self, l: u32, b: u32, i: u32, j: u32, budget: &Budget) -> bool {
        self.writes.get(&l).is_some_and(|ws| {
            ws.iter().any(|w| {
                !budget.spend(w.at.len()) || pos_in(&w.at, b).is_some_and(|k| i < k && k <= j)
            })
        })
    }
}

/// The uses of every local in `blocks`; `None` when recording them would pass the budget.
fn analyse(blocks: &[Block], budget: &Budget) -> Option<Uses> {
    let mut uses = Uses::default();
    let mut next = 0;
    let mut chain = Vec::new();
    for b in blocks {
        if !collect(b, &mut chain, &mut next, &mut uses, budget) {
            return None;
        }
    }
    Some(uses)
}

fn collect(
    block: &Block,
    chain: &mut Chain,
    next: &mut u32,
    u: &mut Uses,
    budget: &Budget,
) -> bool {
    let id = *next;
    *next += 1;
    let sure = block
        .stmts
        .iter()
        .take_while(|s| {
            matches!(
                s,
                Stmt::ResetLocal(_)
                    | Stmt::MakeArray(_)
                    | Stmt::MakeNull(_)
                    | Stmt::MakeObject(_)
                    | Stmt::MakeSet(_)
                    | Stmt::MakeValue { .. }
                    | Stmt::AssignVar { .. }
                    | Stmt::AssignInt { .. }
                    | Stmt::Nop
            )
        })
        .count();
    u.sure.insert(id, u32::try_from(sure).unwrap_or(u32::MAX));
    let mut prev: Option<&Stmt> = None;
    for (k, s) in block.stmts.iter().enumerate() {
        chain.push((id, u32::try_from(k).unwrap_or(u32::MAX - 1) + 1));
        // Each statement's position is copied for each local it uses, a few times at most.
        if !budget.spend(chain.len()) {
            return false;
        }
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        own_uses(s, &mut reads, &mut writes);
        for (r, in_op) in reads {
            u.reads.entry(r).or_default().push(chain.clone());
            if !in_op {
                u.slot_reads.insert((r, chain.clone()));
            }
        }
        for (w, kills) in writes {
            u.writes.entry(w).or_default().push(Write {
                at: chain.clone(),
                kills,
            });
        }
        match s {
            Stmt::AssignVar { source, target } => {
                u.copies.push((chain.clone(), *target, source.clone()));
            }
            Stmt::MakeValue { value, target } => {
                u.copies
                    .push((chain.clone(), *target, Op::Const(value.clone())));
            }
            _ => {}
        }
        match s {
            Stmt::AssignVar { target: t, .. }
            | Stmt::AssignInt { target: t, .. }
            | Stmt::MakeValue { target: t, .. }
            | Stmt::MakeArray(t)
            | Stmt::MakeNull(t)
            | Stmt::MakeObject(t)
            | Stmt::MakeSet(t)
            | Stmt::ResetLocal(t) => u.pure_writes.push((chain.clone(), *t)),
            _ => {}
        }
        if let Some(r) = prev.and_then(|p| test_pair(p, s)) {
            let mut call = chain.clone();
            if let Some(last) = call.last_mut() {
                last.1 -= 1;
            }
            u.tests.push((call, chain.clone(), r));
        }
        let inner = match s {
            Stmt::Block(bs) => bs.iter().all(|b| collect(b, chain, next, u, budget)),
            Stmt::Not(b) | Stmt::With { block: b, .. } => collect(b, chain, next, u, budget),
            Stmt::Scan {
                key, value, block, ..
            } => {
                chain.push((*next, 0));
                for w in [*key, *value] {
                    u.writes.entry(w).or_default().push(Write {
                        at: chain.clone(),
                        kills: true,
                    });
                }
                chain.pop();
                collect(block, chain, next, u, budget)
            }
            _ => true,
        };
        if !inner {
            return false;
        }
        chain.pop();
        prev = Some(s);
    }
    true
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

/// The locals a statement reads (with whether the place could hold a constant instead), and
/// writes (with whether the write overwrites), itself: its
/// nested blocks aside; a Scan's key and value are written at its body's start, see
/// [`collect`]. A call or dot that fails writes nothing but ends the block, so whatever comes
/// after it in the block sees its value.
pub(crate) fn own_uses(s: &Stmt, reads: &mut Vec<(u32, bool)>, writes: &mut Vec<(u32, bool)>) {
    let op = |o: &Op, reads: &mut Vec<(u32, bool)>| {
        if let Op::Local(l) = o {
            reads.push((*l, true));
        }
    };
    match s {
        Stmt::ArrayAppend { value, array } => {
            op(value, reads);
            reads.push((*array, false));
            writes.push((*array, false));
        }
        Stmt::AssignInt { target, .. }
        | Stmt::MakeArray(target)
        | Stmt::MakeNull(target)
        | Stmt::MakeObject(target)
        | Stmt::MakeSet(target)
        | Stmt::MakeValue { target, .. }
        | Stmt::ResetLocal(target) => writes.push((*target, true)),
        Stmt::AssignVarOnce { source, target, .. } => {
            op(source, reads);
            reads.push((*target, false));
            writes.push((*target, false));
        }
        Stmt::AssignVar { source, target } => {
            op(source, reads);
            writes.push((*target, true));
        }
        Stmt::Block(_) | Stmt::Break(_) | Stmt::Nop | Stmt::Not(_) => {}
        Stmt::CallDynamic { args, result, path } => {
            for o in args.iter().chain(path) {
                op(o, reads);
            }
            writes.push((*result, true));
        }
        Stmt::CallFunc { args, result, .. } => {
            for o in args {
                op(o, reads);
            }
            writes.push((*result, true));
        }
        Stmt::CallBuiltin {
            builtin,
            args,
            result,
        } => {
            for o in args {
                op(o, reads);
            }
            // internal.print writes nothing and never fails.
            writes.push((*result, !matches!(builtin.imp, Impl::Void)));
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
            writes.push((*target, true));
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
            reads.push((*l, false));
        }
        Stmt::Len { source, target } => {
            op(source, reads);
            writes.push((*target, true));
        }
        Stmt::ObjectInsertOnce {
            key, value, object, ..
        }
        | Stmt::ObjectInsert { key, value, object } => {
            op(key, reads);
            op(value, reads);
            reads.push((*object, false));
            writes.push((*object, false));
        }
        Stmt::ObjectMerge { a, b, target } => {
            reads.push((*a, false));
            reads.push((*b, false));
            writes.push((*target, true));
        }
        Stmt::Scan { source, .. } => reads.push((*source, false)),
        Stmt::SetAdd { value, set } => {
            op(value, reads);
            reads.push((*set, false));
            writes.push((*set, false));
        }
        Stmt::With { local, value, .. } => {
            op(value, reads);
            reads.push((*local, false));
            writes.push((*local, false));
        }
    }
}

/// The block and position a chain ends in.
fn place(c: &Chain) -> (u32, u32) {
    c.last().copied().unwrap_or((u32::MAX, 0))
}

/// The position in block `b` of the statement a chain passes through there.
fn pos_in(c: &Chain, b: u32) -> Option<u32> {
    c.iter().find(|(x, _)| *x == b).map(|(_, j)| *j)
}

/// What a pass decided: statements to drop, reads to rename in statements, and tests to fuse
/// with the builtin call before them.
#[derive(Default)]
struct Edits {
    drop: BTreeSet<Chain>,
    rename: BTreeMap<Chain, Vec<(u32, Op)>>,
    fuse: BTreeSet<Chain>,
}

/// One round of copy and constant propagation; whether anything changed.
fn propagate_copies(blocks: &mut [Block], fixed: &[u32], budget: &Budget) -> bool {
    let Some(u) = analyse(blocks, budget) else {
        return false;
    };
    let mut edits = Edits::default();
    let mut targets: BTreeSet<u32> = BTreeSet::new();
    let mut sources: BTreeSet<u32> = BTreeSet::new();
    for (at, t, source) in &u.copies {
        if budget.spent() {
            break;
        }
        let t = *t;
        let s = match source {
            Op::Local(s) => Some(*s),
            Op::Const(_) => None,
        };
        // Copies dropped in one round do not feed each other: a local is not both a dropped
        // copy's target and another's source.
        if fixed.contains(&t) || s.is_some_and(|s| targets.contains(&s)) || sources.contains(&t) {
            continue;
        }
        let (b, i) = place(at);
        let mut renamed = Vec::new();
        let safe = s == Some(t)
            || u.reads.get(&t).is_none_or(|reads| {
                reads.iter().all(|r| {
                    if u.shadowed(t, at, r, budget) {
                        return true;
                    }
                    match pos_in(r, b) {
                        Some(j)
                            if j > i
                                && !u.written_between(t, b, i, j, budget)
                                && s.is_none_or(|s| !u.written_between(s, b, i, j, budget))
                                && (s.is_some() || !u.slot_reads.contains(&(t, r.clone()))) =>
                        {
                            renamed.push(r.clone());
                            true
                        }
                        _ => false,
                    }
                })
            });
        if !safe {
            continue;
        }
        edits.drop.insert(at.clone());
        for r in renamed {
            edits.rename.entry(r).or_default().push((t, source.clone()));
        }
        targets.insert(t);
        if let Some(s) = s {
            sources.insert(s);
        }
    }
    if edits.drop.is_empty() {
        return false;
    }
    apply(blocks, &edits);
    true
}

/// Drops the statements that only write a local no read can see; whether any was dropped.
fn drop_dead_writes(blocks: &mut [Block], fixed: &[u32], budget: &Budget) -> bool {
    let Some(u) = analyse(blocks, budget) else {
        return false;
    };
    let mut edits = Edits::default();
    for (at, t) in &u.pure_writes {
        let unseen = u
            .reads
            .get(t)
            .is_none_or(|reads| reads.iter().all(|r| u.shadowed(*t, at, r, budget)));
        if unseen && !fixed.contains(t) {
            edits.drop.insert(at.clone());
        }
    }
    if edits.drop.is_empty() {
        return false;
    }
    apply(blocks, &edits);
    true
}

/// Builds `[c, ...]`, `{k: v, ...}` and `{c, ...}` made of constants, appended or inserted
/// right after the collection is made, as one constant; whether any was.
fn fold_literals(blocks: &mut [Block]) -> bool {
    let mut changed = false;
    for b in blocks.iter_mut() {
        changed |= fold_block(b);
    }
    changed
}

fn fold_block(block: &mut Block) -> bool {
    let mut changed = false;
    let stmts = std::mem::take(&mut block.stmts);
    let mut out: Vec<Stmt> = Vec::with_capacity(stmts.len());
    for mut s in stmts {
        for b in nested_mut(&mut s) {
            changed |= fold_block(b);
        }
        let folded = match (out.last_mut(), &s) {
            (
                Some(Stmt::MakeArray(t)),
                Stmt::ArrayAppend {
                    value: Op::Const(v),
                    array,
                },
            ) if t == array => Some((*t, Val::Arr(std::sync::Arc::new(vec![v.clone()])))),
            (
                Some(Stmt::MakeValue {
                    value: Val::Arr(a),
                    target,
                }),
                Stmt::ArrayAppend {
                    value: Op::Const(v),
                    array,
                },
            ) if target == array => {
                std::sync::Arc::make_mut(a).push(v.clone());
                changed = true;
                continue;
            }
            (
                Some(Stmt::MakeSet(t)),
                Stmt::SetAdd {
                    value: Op::Const(v),
                    set,
                },
            ) if t == set => Some((
                *t,
                Val::Set(std::sync::Arc::new([v.clone()].into_iter().collect())),
            )),
            (
                Some(Stmt::MakeValue {
                    value: Val::Set(a),
                    target,
                }),
                Stmt::SetAdd {
                    value: Op::Const(v),
                    set,
                },
            ) if target == set => {
                std::sync::Arc::make_mut(a).insert(v.clone());
                changed = true;
                continue;
            }
            (
                Some(Stmt::MakeObject(t)),
                Stmt::ObjectInsert {
                    key: Op::Const(k),
                    value: Op::Const(v),
                    object,
                },
            ) if t == object => Some((
                *t,
                Val::Obj(std::sync::Arc::new(
                    [(k.clone(), v.clone())].into_iter().collect(),
                )),
            )),
            (
                Some(Stmt::MakeValue {
                    value: Val::Obj(o),
                    target,
                }),
                Stmt::ObjectInsert {
                    key: Op::Const(k),
                    value: Op::Const(v),
                    object,
                },
            ) if target == object => {
                std::sync::Arc::make_mut(o).insert(k.clone(), v.clone());
                changed = true;
                continue;
            }
            _ => None,
        };
        match (folded, out.last_mut()) {
            (Some((target, value)), Some(last)) => {
                *last = Stmt::MakeValue { value, target };
                changed = true;
            }
            _ => out.push(s),
        }
    }
    block.stmts = out;
    changed
}

/// The ends of rule bodies and functions: `IsDefined(x)` right before a block's last
/// statement `AssignVarOnce(x -> y)` changes nothing (an undefined `x` assigns nothing either),
/// and a function's last statement `ReturnLocal(ret)` names what the function returns anyway.
fn trim_ends(blocks: &mut [Block], ret: Option<u32>) {
    for b in blocks.iter_mut() {
        trim_block(b);
    }
    if let (Some(ret), Some(last)) = (ret, blocks.last_mut()) {
        if matches!(last.stmts.last(), Some(Stmt::ReturnLocal(l)) if *l == ret) {
            last.stmts.pop();
        }
    }
}

fn trim_block(block: &mut Block) {
    for s in &mut block.stmts {
        for b in nested_mut(s) {
            trim_block(b);
        }
    }
    let n = block.stmts.len();
    if n >= 2 {
        let redundant = matches!(
            (block.stmts.get(n - 2), block.stmts.get(n - 1)),
            (
                Some(Stmt::IsDefined(x)),
                Some(Stmt::AssignVarOnce { source: Op::Local(y), .. })
            ) if x == y
        );
        if redundant {
            block.stmts.remove(n - 2);
        }
    }
}

/// Applies `edits` (positions as [`analyse`] numbered them).
fn apply(blocks: &mut [Block], edits: &Edits) {
    let mut next = 0;
    let mut chain = Vec::new();
    for b in blocks.iter_mut() {
        apply_block(b, edits, &mut chain, &mut next);
    }
}

fn apply_block(block: &mut Block, edits: &Edits, chain: &mut Chain, next: &mut u32) {
    let id = *next;
    *next += 1;
    let stmts = std::mem::take(&mut block.stmts);
    let mut out = Vec::with_capacity(stmts.len());
    for (k, mut s) in stmts.into_iter().enumerate() {
        chain.push((id, u32::try_from(k).unwrap_or(u32::MAX - 1) + 1));
        if let Some(renames) = edits.rename.get(chain) {
            let map: BTreeMap<u32, Op> = renames.iter().cloned().collect();
            rename_reads(&mut s, &map);
        }
        for b in nested_mut(&mut s) {
            apply_block(b, edits, chain, next);
        }
        if edits.fuse.contains(chain) {
            match out.pop() {
                Some(Stmt::CallBuiltin { builtin, args, .. }) => {
                    out.push(match (builtin.test, args.as_slice()) {
                        (Some(kind), [arg]) => Stmt::TypeIs(arg.clone(), kind),
                        _ => Stmt::Test { builtin, args },
                    });
                }
                // Not the pair `analyse` saw: keep both statements as they were.
                other => {
                    out.extend(other);
                    out.push(s);
                }
            }
        } else if !edits.drop.contains(chain) {
            out.push(s);
        }
        chain.pop();
    }
    block.stmts = out;
}

/// The blocks nested in a statement.
pub(crate) fn nested(s: &Stmt) -> Vec<&Block> {
    match s {
        Stmt::Block(bs) => bs.iter().collect(),
        Stmt::Not(b) | Stmt::With { block: b, .. } | Stmt::Scan { block: b, .. } => vec![b],
        _ => Vec::new(),
    }
}

/// Whether a statement itself (its nested blocks aside) reads or writes local `l`.
pub(crate) fn touches(s: &Stmt, l: u32) -> bool {
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    own_uses(s, &mut reads, &mut writes);
    reads.iter().chain(&writes).any(|(x, _)| *x == l)
}

pub(crate) fn nested_mut(s: &mut Stmt) -> Vec<&mut Block> {
    match s {
        Stmt::Block(bs) => bs.iter_mut().collect(),
        Stmt::Not(b) | Stmt::With { block: b, .. } | Stmt::Scan { block: b, .. } => vec![b],
        _ => Vec::new(),
    }
}

/// Renames the locals a statement only reads (a dropped local is never written but by the
/// copies removed, so it is never in a place that is also written).
fn rename_reads(s: &mut Stmt, map: &BTreeMap<u32, Op>) {
    // A constant never replaces a local in a place that names one (see `slot_reads`).
    let slot = |l: &mut u32| {
        if let Some(Op::Local(to)) = map.get(l) {
            *l = *to;
        }
    };
    let op = |o: &mut Op| {
        if let Op::Local(l) = o {
            if let Some(to) = map.get(l) {
                *o = to.clone();
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

/// Fuses each builtin call whose result reaches no read but the `NotEqual(r, false)` after it.
fn fuse_tests(blocks: &mut [Block], fixed: &[u32], budget: &Budget) {
    let Some(u) = analyse(blocks, budget) else {
        return;
    };
    let mut edits = Edits::default();
    for (call, test, r) in &u.tests {
        let alone = u.reads.get(r).is_none_or(|reads| {
            reads
                .iter()
                .all(|read| read == test || u.shadowed(*r, call, read, budget))
        });
        if alone && !fixed.contains(r) {
            edits.fuse.insert(test.clone());
        }
    }
    if !edits.fuse.is_empty() {
        apply(blocks, &edits);
    }
}
