//! Small functions inlined into their callers, and frames numbered densely.
//!
//! A call costs far more than the statements of a small function (a frame taken and cleared,
//! arguments copied in, the result copied out): the constitution's helpers (`lookup`,
//! `clamp01`, `round_score`, ...) run 5 to 20 statements per call, ~100 calls a decision. A
//! call to a function that is not a rule value (those are memoised: see [`Func::memo`]) and
//! is small and plain (no `ReturnLocal` inside, no `With`, no call by path) becomes, in the
//! caller's own frame:
//!
//! ```text
//! p' := arg            for each parameter the body writes or whose argument is a constant
//! ResetLocal(l')       for each other local of the callee: a call starts on an empty frame
//! Block(body')         the callee's blocks: a failure ends one of them, as in the function
//! IsDefined(ret')      the call fails when the function is undefined
//! result := ret'
//! ```
//!
//! where `x'` is callee local `x` moved past the caller's locals (every inlined call of a caller
//! shares one such region), and a parameter the body only reads is the caller's argument local
//! itself. The caller is then optimised again (the copies in and out mostly disappear). Each of
//! [`ROUNDS`] rounds inlines the bodies as the round before left them (a helper's helper in the
//! next round), at most [`INLINE_MAX`] statements each and [`GROWTH_MAX`] in all per program.

use crate::program::{Block, Op, Stmt};

/// Rounds of inlining: each inlines the bodies as the round before left them.
pub(crate) const ROUNDS: usize = 3;

/// Statements (nested ones included) of the largest body inlined.
pub(crate) const INLINE_MAX: usize = 40;

/// Statements inlining may add to one program.
pub(crate) const GROWTH_MAX: usize = 1 << 16;

/// What a call site needs of a function to inline it.
#[derive(Clone)]
pub(crate) struct Inlinable {
    pub params: Vec<u32>,
    pub ret: u32,
    pub frame: usize,
    pub blocks: Vec<Block>,
    /// Per parameter, whether the body writes it.
    pub written: Vec<bool>,
}

impl Inlinable {
    /// `None` unless the body can be inlined: small, and nothing in it that depends on being a
    /// function of its own (a `ReturnLocal`, a `With`, a call by path).
    pub(crate) fn of(params: &[u32], ret: u32, frame: usize, blocks: &[Block]) -> Option<Self> {
        let mut size = 0;
        if !blocks.iter().all(|b| plain(b, &mut size)) || size > INLINE_MAX {
            return None;
        }
        let written = params
            .iter()
            .map(|&p| blocks.iter().any(|b| writes(b, p)))
            .collect();
        Some(Inlinable {
            params: params.to_vec(),
            ret,
            frame,
            blocks: blocks.to_vec(),
            written,
        })
    }
}

fn plain(b: &Block, size: &mut usize) -> bool {
    b.stmts.iter().all(|s| {
        *size += 1;
        !matches!(
            s,
            Stmt::ReturnLocal(_) | Stmt::With { .. } | Stmt::CallDynamic { .. }
        ) && *size <= INLINE_MAX
            && crate::opt::nested(s).iter().all(|b| plain(b, size))
    })
}

fn writes(b: &Block, l: u32) -> bool {
    b.stmts.iter().any(|s| {
        let mut hit = false;
        for_locals(s, &mut |x, write| hit |= write && x == l);
        hit || crate::opt::nested(s).iter().any(|b| writes(b, l))
    })
}

/// Inlines the calls in `blocks` to the functions `table` holds (by function index); `growth`
/// counts the statements added. Every inlined call's locals live in one region past the
/// caller's `frame`, which grows by the largest callee's: the calls' runs never overlap (each
/// region's locals are reset on entry and dead once the result is copied out). Returns the
/// functions inlined.
pub(crate) fn inline_calls(
    blocks: &mut [Block],
    frame: &mut usize,
    table: &[Option<Inlinable>],
    growth: &mut usize,
) -> Vec<usize> {
    let Ok(base) = u32::try_from(*frame) else {
        return Vec::new();
    };
    let mut site = Site {
        base,
        extra: 0,
        table,
        growth,
        inlined: Vec::new(),
    };
    for b in blocks.iter_mut() {
        inline_block(b, &mut site);
    }
    *frame += site.extra;
    site.inlined
}

struct Site<'a> {
    base: u32,
    /// Slots the region needs so far.
    extra: usize,
    table: &'a [Option<Inlinable>],
    growth: &'a mut usize,
    inlined: Vec<usize>,
}

fn inline_block(block: &mut Block, site: &mut Site<'_>) {
    let base = site.base;
    let stmts = std::mem::take(&mut block.stmts);
    let mut out = Vec::with_capacity(stmts.len());
    for mut s in stmts {
        for b in crate::opt::nested_mut(&mut s) {
            inline_block(b, site);
        }
        let callee = match &s {
            Stmt::CallFunc { func, args, .. } => site
                .table
                .get(*func)
                .and_then(Option::as_ref)
                .filter(|f| f.params.len() == args.len()),
            _ => None,
        };
        let (Some(f), Stmt::CallFunc { func, args, result }) = (callee, &s) else {
            out.push(s);
            continue;
        };
        let added = f.blocks.iter().map(count).sum::<usize>() + f.frame + 3;
        let past = (base as usize).saturating_add(f.frame);
        if *site.growth + added > GROWTH_MAX || past > crate::program::MAX_LOCALS as usize {
            out.push(s);
            continue;
        }
        *site.growth += added;
        site.extra = site.extra.max(f.frame);
        // Where each callee local lives in the caller's frame.
        let mut map: Vec<u32> = (0..f.frame)
            .map(|l| base.saturating_add(u32::try_from(l).unwrap_or(u32::MAX)))
            .collect();
        let mut copies = Vec::new();
        for ((&p, arg), &written) in f.params.iter().zip(args).zip(&f.written) {
            match arg {
                Op::Local(x) if !written => {
                    if let Some(m) = map.get_mut(p as usize) {
                        *m = *x;
                    }
                }
                _ => copies.push(Stmt::AssignVar {
                    source: arg.clone(),
                    target: base.saturating_add(p),
                }),
            }
        }
        out.extend(copies);
        for l in 0..f.frame {
            let l = u32::try_from(l).unwrap_or(u32::MAX);
            if !f.params.contains(&l) {
                out.push(Stmt::ResetLocal(base.saturating_add(l)));
            }
        }
        let mut body = f.blocks.clone();
        renumber(&mut body, &mut |l| {
            map.get(l as usize).copied().unwrap_or(l)
        });
        out.push(Stmt::Block(body));
        let ret = map.get(f.ret as usize).copied().unwrap_or(f.ret);
        out.push(Stmt::IsDefined(ret));
        out.push(Stmt::AssignVar {
            source: Op::Local(ret),
            target: *result,
        });
        site.inlined.push(*func);
    }
    block.stmts = out;
}

fn count(b: &Block) -> usize {
    b.stmts
        .iter()
        .map(|s| {
            1 + crate::opt::nested(s)
                .iter()
                .map(|b| count(b))
                .sum::<usize>()
        })
        .sum()
}

/// Numbers the locals `blocks` use densely: `keep` first, in its order (renamed in place),
/// then the others in their order. Returns the frame size.
pub(crate) fn compact(blocks: &mut [Block], keep: &mut [u32]) -> usize {
    let mut used = std::collections::BTreeSet::new();
    for b in blocks.iter() {
        used_in(b, &mut used);
    }
    let mut map = std::collections::HashMap::new();
    for &k in keep.iter() {
        let next = u32::try_from(map.len()).unwrap_or(u32::MAX);
        map.entry(k).or_insert(next);
    }
    for l in used {
        let next = u32::try_from(map.len()).unwrap_or(u32::MAX);
        map.entry(l).or_insert(next);
    }
    renumber(blocks, &mut |l| map.get(&l).copied().unwrap_or(l));
    for k in keep.iter_mut() {
        *k = map.get(k).copied().unwrap_or(*k);
    }
    map.len().max(1)
}

fn used_in(b: &Block, used: &mut std::collections::BTreeSet<u32>) {
    for s in &b.stmts {
        for_locals(s, &mut |l, _| {
            used.insert(l);
        });
        for b in crate::opt::nested(s) {
            used_in(b, used);
        }
    }
}

/// Renames every local `blocks` name through `f`.
fn renumber(blocks: &mut [Block], f: &mut impl FnMut(u32) -> u32) {
    for b in blocks {
        for s in &mut b.stmts {
            locals_mut(s, &mut |l| *l = f(*l));
            for nb in crate::opt::nested_mut(s) {
                renumber(std::slice::from_mut(nb), f);
            }
        }
    }
}

/// Calls `f` with every local a statement names itself (nested blocks aside) and whether the
/// statement writes it there.
fn for_locals(s: &Stmt, f: &mut impl FnMut(u32, bool)) {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    crate::opt::own_uses(s, &mut reads, &mut writes);
    for (l, _) in reads {
        f(l, false);
    }
    for (l, _) in writes {
        f(l, true);
    }
    // A Scan writes its key and value at the start of each run of its body.
    if let Stmt::Scan { key, value, .. } = s {
        f(*key, true);
        f(*value, true);
    }
}

fn op(o: &mut Op, f: &mut impl FnMut(&mut u32)) {
    if let Op::Local(l) = o {
        f(l);
    }
}

/// Every local field of a statement (nested blocks aside), mutably.
fn locals_mut(s: &mut Stmt, f: &mut impl FnMut(&mut u32)) {
    match s {
        Stmt::ArrayAppend { value, array } => {
            op(value, f);
            f(array);
        }
        Stmt::AssignInt { target, .. }
        | Stmt::MakeArray(target)
        | Stmt::MakeNull(target)
        | Stmt::MakeObject(target)
        | Stmt::MakeSet(target)
        | Stmt::MakeValue { target, .. }
        | Stmt::ResetLocal(target)
        | Stmt::IsDefined(target)
        | Stmt::IsUndefined(target)
        | Stmt::ResultSetAdd(target)
        | Stmt::ReturnLocal(target) => f(target),
        Stmt::AssignVarOnce { source, target, .. } | Stmt::AssignVar { source, target } => {
            op(source, f);
            f(target);
        }
        Stmt::Block(_) | Stmt::Break(_) | Stmt::Nop | Stmt::Not(_) => {}
        Stmt::CallDynamic { args, result, path } => {
            for o in args.iter_mut().chain(path.iter_mut()) {
                op(o, f);
            }
            f(result);
        }
        Stmt::CallFunc { args, result, .. } | Stmt::CallBuiltin { args, result, .. } => {
            for o in args.iter_mut() {
                op(o, f);
            }
            f(result);
        }
        Stmt::Test { args, .. } => {
            for o in args.iter_mut() {
                op(o, f);
            }
        }
        Stmt::Dot {
            source,
            key,
            target,
        } => {
            op(source, f);
            op(key, f);
            f(target);
        }
        Stmt::Equal(a, b) | Stmt::NotEqual(a, b) => {
            op(a, f);
            op(b, f);
        }
        Stmt::TypeIs(o, _) => op(o, f),
        Stmt::Len { source, target } => {
            op(source, f);
            f(target);
        }
        Stmt::ObjectInsertOnce {
            key, value, object, ..
        }
        | Stmt::ObjectInsert { key, value, object } => {
            op(key, f);
            op(value, f);
            f(object);
        }
        Stmt::ObjectMerge { a, b, target } => {
            f(a);
            f(b);
            f(target);
        }
        Stmt::Scan {
            source, key, value, ..
        } => {
            f(source);
            f(key);
            f(value);
        }
        Stmt::SetAdd { value, set } => {
            op(value, f);
            f(set);
        }
        Stmt::With { local, value, .. } => {
            op(value, f);
            f(local);
        }
    }
}
