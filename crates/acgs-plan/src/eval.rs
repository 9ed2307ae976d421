//! The plan interpreter, with the semantics of OPA's Wasm target: a failing statement ends its
//! block, `Break n` leaves n+1 blocks, rule values are memoised per evaluation (a fresh memo
//! per `With`), and only conflicts are errors. A step budget and a call-depth cap stop a
//! looping or exploding plan with an error, never a hang or a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::builtins::{Builtin, Ctx, Fault, Impl};
use crate::ir::Loc;
use crate::program::{Block, Op, Program, Stmt};
use crate::value::Val;
use crate::{EvalError, Limits};

type Frame = Vec<Option<Val>>;

/// Errors are rare and large; boxed, a statement's result fits in registers.
type Res<T> = Result<T, Box<EvalError>>;

/// What a statement tells the block that runs it.
enum Flow {
    Next,
    /// End the current block (a failed condition, or `Break 0`).
    Fail,
    /// Leave this many blocks beyond the current one.
    Break(u32),
    /// `ReturnLocal`: the function is done.
    Return,
}

/// How a block ended.
enum End {
    /// Ran every statement.
    Done,
    /// Stopped early (failed or broke out of itself only).
    Stopped,
    Break(u32),
    Return,
}

pub(crate) struct Eval<'p> {
    prog: &'p Program,
    limits: Limits,
    deadline: Option<Instant>,
    steps: u64,
    /// When `steps` reaches this, [`Eval::checkpoint`] runs.
    check_at: u64,
    depth: u32,
    /// One memo per `With` level: function index to its value.
    memo: Vec<Vec<Option<Val>>>,
    /// The slots of the first memo this evaluation filled: only those are emptied at the end
    /// (the table, as long as the plan has functions, is kept for the next evaluation).
    memo_filled: Vec<usize>,
    /// Values of the functions that depend on data alone, kept across evaluations on the same
    /// data (see [`DataCache`]).
    cache: Arc<DataCache>,
    results: BTreeSet<Val>,
    /// The local the last `ReturnLocal` named.
    returned: Option<u32>,
    /// Buffers reused across calls and across evaluations on this thread.
    scratch: Scratch,
    pub(crate) ctx: Ctx,
}

/// Allocations an evaluation would otherwise make afresh: call frames and memo tables (one per
/// `With` level, the first for the whole evaluation). Kept per thread, emptied of values
/// between evaluations.
#[derive(Default)]
struct Scratch {
    frames: Vec<Frame>,
    memos: Vec<Vec<Option<Val>>>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Builtin arguments passed on the stack; more (no OPA builtin has them) go in a vector.
const ARGS_INLINE: usize = 8;

/// What an unused inline argument slot holds (never read: only `args.len()` slots are passed).
static UNDEFINED_ARG: Val = Val::Null;

/// Steps between two looks at the clock.
const CLOCK_EVERY: u64 = 4096;

/// The step after `steps` at which [`Eval::step`] must look again: the next clock check, or
/// the first step past the budget.
fn next_check(steps: u64, max_steps: u64) -> u64 {
    (steps / CLOCK_EVERY + 1)
        .saturating_mul(CLOCK_EVERY)
        .min(max_steps.saturating_add(1))
}

/// Frames and memo tables larger than this are not kept for the next evaluation.
const KEEP_SCRATCH: usize = 4096;

/// The values of the rules that depend on `data` alone (no input, no `with`, no clock),
/// computed at most once per data document: the constitution's constant tables and views of
/// `data` are then built once, not on every evaluation. A different data document (compared
/// by identity, or by value for a scalar) starts a new cache.
#[derive(Debug)]
pub(crate) struct DataCache {
    data: Val,
    values: Vec<OnceLock<Val>>,
}

impl DataCache {
    pub(crate) fn new(data: &Val, funcs: usize) -> DataCache {
        DataCache {
            data: data.clone(),
            values: (0..funcs).map(|_| OnceLock::new()).collect(),
        }
    }

    pub(crate) fn holds(&self, data: &Val) -> bool {
        same(&self.data, data)
    }
}

/// The same document: one allocation, or equal scalars.
fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Obj(x), Val::Obj(y)) => Arc::ptr_eq(x, y),
        (Val::Arr(x), Val::Arr(y)) => Arc::ptr_eq(x, y),
        (Val::Set(x), Val::Set(y)) => Arc::ptr_eq(x, y),
        (Val::Str(x), Val::Str(y)) => Arc::ptr_eq(x, y),
        (Val::Null | Val::Bool(_) | Val::Num(_), _) => a == b,
        _ => false,
    }
}

impl<'p> Eval<'p> {
    pub(crate) fn new(prog: &'p Program, limits: Limits, cache: Arc<DataCache>) -> Eval<'p> {
        let mut scratch = SCRATCH.with(|s| {
            s.try_borrow_mut()
                .map(|mut s| std::mem::take(&mut *s))
                .unwrap_or_default()
        });
        let mut top = scratch.memos.pop().unwrap_or_default();
        top.resize_with(prog.funcs.len(), || None);
        Eval {
            prog,
            limits,
            deadline: limits.timeout.and_then(|t| Instant::now().checked_add(t)),
            steps: 0,
            check_at: next_check(0, limits.max_steps),
            depth: 0,
            memo: vec![top],
            memo_filled: Vec::new(),
            cache,
            results: BTreeSet::new(),
            returned: None,
            scratch,
            ctx: Ctx::now(),
        }
    }

    /// Runs plan `index` on `input` (undefined when `None`) and `data`; returns its result set.
    pub(crate) fn run_plan(
        mut self,
        index: usize,
        input: Option<Val>,
        data: Val,
    ) -> Result<BTreeSet<Val>, EvalError> {
        let prog = self.prog;
        let (_, entry) = prog
            .plans
            .get(index)
            .ok_or_else(|| EvalError::Internal(format!("no plan {index}")))?;
        let mut frame: Frame = Vec::new();
        frame.resize_with(entry.frame.max(2), || None);
        let run = set(&mut frame, 0, input)
            .and_then(|()| set(&mut frame, 1, Some(data)))
            .and_then(|()| self.blocks(&entry.blocks, &mut frame));
        run.map_err(|e| *e)?;
        Ok(std::mem::take(&mut self.results))
    }

    fn blocks(&mut self, blocks: &[Block], frame: &mut Frame) -> Res<Flow> {
        for b in blocks {
            match self.block(b, frame)? {
                End::Done | End::Stopped => {}
                End::Break(n) => return Ok(Flow::Break(n)),
                End::Return => return Ok(Flow::Return),
            }
        }
        Ok(Flow::Next)
    }

    /// Runs a block's statements. The common, simple statements run here, in the loop; the
    /// others (calls, nested blocks, loops, inserts) in [`Eval::stmt`], out of line: one
    /// function per statement was a prologue and an epilogue per statement.
    fn block(&mut self, block: &Block, frame: &mut Frame) -> Res<End> {
        for s in &block.stmts {
            self.step()?;
            let ok = match s {
                Stmt::AssignVar { source, target } => {
                    let v = read(frame, source);
                    set(frame, *target, v)?;
                    true
                }
                Stmt::AssignVarOnce {
                    source,
                    target,
                    loc,
                } => {
                    let v = read(frame, source);
                    let t = slot(frame, *target)?;
                    match (t.as_ref(), v) {
                        (None, v) => *t = v,
                        (Some(_), None) => {}
                        (Some(old), Some(v)) => {
                            if *old != v {
                                return Err(self.conflict("var assignment conflict", *loc));
                            }
                        }
                    }
                    true
                }
                Stmt::IsDefined(l) => frame.get(*l as usize).is_some_and(Option::is_some),
                Stmt::IsUndefined(l) => frame.get(*l as usize).is_none_or(Option::is_none),
                Stmt::NotEqual(a, b) => matches!(
                    (read_ref(frame, a), read_ref(frame, b)),
                    (Some(x), Some(y)) if x != y
                ),
                Stmt::Equal(a, b) => matches!(
                    (read_ref(frame, a), read_ref(frame, b)),
                    (Some(x), Some(y)) if x == y
                ),
                Stmt::TypeIs(o, kind) => read_ref(frame, o).is_some_and(|v| kind.holds(v)),
                Stmt::ResetLocal(t) => {
                    set(frame, *t, None)?;
                    true
                }
                Stmt::Dot {
                    source,
                    key,
                    target,
                } => match (read_ref(frame, source), read_ref(frame, key)) {
                    (Some(src), Some(k)) => match dot(src, k) {
                        Some(v) => {
                            set(frame, *target, Some(v))?;
                            true
                        }
                        None => false,
                    },
                    _ => false,
                },
                Stmt::ReturnLocal(l) => {
                    self.returned = Some(*l);
                    return Ok(End::Return);
                }
                Stmt::MakeValue { value, target } => {
                    set(frame, *target, Some(value.clone()))?;
                    true
                }
                Stmt::Break(0) => return Ok(End::Stopped),
                Stmt::Break(n) => return Ok(End::Break(n - 1)),
                other => match self.stmt(other, frame)? {
                    Flow::Next => true,
                    Flow::Fail | Flow::Break(0) => false,
                    Flow::Break(n) => return Ok(End::Break(n - 1)),
                    Flow::Return => return Ok(End::Return),
                },
            };
            if !ok {
                return Ok(End::Stopped);
            }
        }
        Ok(End::Done)
    }

    /// A body run as one level (Scan iteration, Not, With): whether it reached its end.
    fn body(&mut self, block: &Block, frame: &mut Frame) -> Res<Option<bool>> {
        Ok(match self.block(block, frame)? {
            End::Done => Some(true),
            End::Stopped | End::Break(_) => Some(false),
            End::Return => None,
        })
    }

    /// Calls function `f` with `args` read from the caller's `frame`.
    fn call(&mut self, f: usize, frame: &Frame, args: &[Op]) -> Res<Option<Val>> {
        let prog = self.prog;
        let func = prog
            .funcs
            .get(f)
            .ok_or_else(|| EvalError::Internal(format!("no function {f}")))?;
        // The data cache serves only outside any `With` and only when the call is handed the
        // evaluation's own data document.
        let cached = func.data_only
            && self.memo.len() == 1
            && matches!(args.get(1).and_then(|a| read_ref(frame, a)), Some(d) if same(d, &self.cache.data));
        if func.memo {
            if let Some(v) = self
                .memo
                .last()
                .and_then(|m| m.get(f))
                .and_then(Option::as_ref)
            {
                return Ok(Some(v.clone()));
            }
            if cached {
                if let Some(v) = self.cache.values.get(f).and_then(OnceLock::get) {
                    return Ok(Some(v.clone()));
                }
            }
        }
        if self.depth >= self.limits.max_depth {
            return Err(Box::new(EvalError::CallDepth(self.limits.max_depth)));
        }
        let mut callee = self.scratch.frames.pop().unwrap_or_default();
        callee.resize_with(func.frame, || None);
        for (&p, a) in func.params.iter().zip(args) {
            set(&mut callee, p, read(frame, a))?;
        }
        self.depth += 1;
        self.returned = None;
        let r = self.blocks(&func.blocks, &mut callee);
        self.depth -= 1;
        let ret = self.returned.take().unwrap_or(func.ret);
        let out = callee.get_mut(ret as usize).and_then(Option::take);
        callee.clear();
        self.scratch.frames.push(callee);
        r?;
        if func.memo {
            if let Some(v) = &out {
                if let Some(slot) = self.memo.last_mut().and_then(|m| m.get_mut(f)) {
                    *slot = Some(v.clone());
                    if self.memo.len() == 1 {
                        self.memo_filled.push(f);
                    }
                }
                if cached {
                    if let Some(cell) = self.cache.values.get(f) {
                        // Another thread may have set it first, to the same value.
                        let _ = cell.set(v.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// The statements [`Eval::block`] does not run inline (it runs them all the same way).
    #[inline(never)]
    fn stmt(&mut self, s: &Stmt, frame: &mut Frame) -> Res<Flow> {
        Ok(match s {
            Stmt::ArrayAppend { value, array } => {
                let Some(v) = read(frame, value) else {
                    return Ok(Flow::Fail);
                };
                match slot(frame, *array)? {
                    Some(Val::Arr(a)) => Arc::make_mut(a).push(v),
                    _ => return Ok(Flow::Fail),
                }
                Flow::Next
            }
            Stmt::AssignInt { value, target } => {
                set(frame, *target, Some(Val::int(*value)))?;
                Flow::Next
            }
            Stmt::Block(blocks) => self.blocks(blocks, frame)?,
            Stmt::CallDynamic { args, result, path } => {
                self.call_dynamic(args, result, path, frame)?
            }
            Stmt::CallFunc { func, args, result } => match self.call(*func, frame, args)? {
                Some(v) => {
                    set(frame, *result, Some(v))?;
                    Flow::Next
                }
                None => Flow::Fail,
            },
            Stmt::CallBuiltin {
                builtin,
                args,
                result,
            } => self.call_builtin(builtin, args, result, frame)?,
            Stmt::Test { builtin, args } => pass(!matches!(
                self.invoke(builtin, args, frame)?,
                None | Some(Val::Bool(false))
            )),
            Stmt::Len { source, target } => {
                let Some(v) = read_ref(frame, source) else {
                    return Ok(Flow::Fail);
                };
                let n = match v {
                    Val::Str(s) => s.len(),
                    Val::Arr(a) => a.len(),
                    Val::Obj(o) => o.len(),
                    Val::Set(s) => s.len(),
                    _ => 0,
                };
                set(
                    frame,
                    *target,
                    Some(Val::int(i64::try_from(n).unwrap_or(i64::MAX))),
                )?;
                Flow::Next
            }
            Stmt::MakeArray(t) => {
                set(frame, *t, Some(Val::Arr(Arc::new(Vec::new()))))?;
                Flow::Next
            }
            Stmt::MakeNull(t) => {
                set(frame, *t, Some(Val::Null))?;
                Flow::Next
            }
            Stmt::MakeObject(t) => {
                set(frame, *t, Some(Val::empty_object()))?;
                Flow::Next
            }
            Stmt::MakeSet(t) => {
                set(frame, *t, Some(Val::Set(Arc::new(BTreeSet::new()))))?;
                Flow::Next
            }
            Stmt::Nop => Flow::Next,
            Stmt::Not(block) => match self.body(block, frame)? {
                Some(true) => Flow::Fail,
                Some(false) => Flow::Next,
                None => Flow::Return,
            },
            Stmt::ObjectInsertOnce {
                key,
                value,
                object,
                loc,
            } => self.object_insert_once(key, value, object, loc, frame)?,
            Stmt::ObjectInsert { key, value, object } => {
                let (Some(k), Some(v)) = (read(frame, key), read(frame, value)) else {
                    return Ok(Flow::Fail);
                };
                match slot(frame, *object)? {
                    Some(Val::Obj(o)) => {
                        Arc::make_mut(o).insert(k, v);
                    }
                    _ => return Ok(Flow::Fail),
                }
                Flow::Next
            }
            Stmt::ObjectMerge { a, b, target } => self.object_merge(a, b, target, frame)?,
            Stmt::ResultSetAdd(l) => {
                if let Some(v) = frame.get(*l as usize).cloned().flatten() {
                    self.results.insert(v);
                }
                Flow::Next
            }
            Stmt::Scan {
                source,
                key,
                value,
                block,
            } => self.scan(source, key, value, block, frame)?,
            Stmt::SetAdd { value, set: s } => {
                let Some(v) = read(frame, value) else {
                    return Ok(Flow::Fail);
                };
                match slot(frame, *s)? {
                    Some(Val::Set(set)) => {
                        Arc::make_mut(set).insert(v);
                    }
                    _ => return Ok(Flow::Fail),
                }
                Flow::Next
            }
            Stmt::With {
                local,
                path,
                value,
                block,
            } => self.with(local, path, value, block, frame)?,
            // Run by the block loop itself, never handed here.
            Stmt::AssignVar { .. }
            | Stmt::AssignVarOnce { .. }
            | Stmt::Break(_)
            | Stmt::Dot { .. }
            | Stmt::Equal(..)
            | Stmt::NotEqual(..)
            | Stmt::TypeIs(..)
            | Stmt::IsDefined(_)
            | Stmt::IsUndefined(_)
            | Stmt::MakeValue { .. }
            | Stmt::ResetLocal(_)
            | Stmt::ReturnLocal(_) => {
                return Err(Box::new(EvalError::Internal(
                    "a statement of the block loop reached the out-of-line runner".into(),
                )))
            }
        })
    }

    #[inline(never)]
    fn call_dynamic(
        &mut self,
        args: &[Op],
        result: &u32,
        path: &[Op],
        frame: &mut Frame,
    ) -> Res<Flow> {
        Ok({
            let mut key = Vec::with_capacity(path.len());
            for p in path {
                match read(frame, p) {
                    Some(Val::Str(s)) => key.push(s.to_string()),
                    _ => return Ok(Flow::Fail),
                }
            }
            let Some(&f) = self.prog.paths.get(&key) else {
                return Ok(Flow::Fail);
            };
            match self.call(f, frame, args)? {
                Some(v) => {
                    set(frame, *result, Some(v))?;
                    Flow::Next
                }
                // OPA's Wasm leaves three blocks when a dynamic call is undefined.
                None => Flow::Break(3),
            }
        })
    }

    #[inline(never)]
    fn call_builtin(
        &mut self,
        builtin: &Builtin,
        args: &[Op],
        result: &u32,
        frame: &mut Frame,
    ) -> Res<Flow> {
        if matches!(builtin.imp, Impl::Void) {
            return Ok(Flow::Next);
        }
        Ok(match self.invoke(builtin, args, frame)? {
            Some(v) => {
                set(frame, *result, Some(v))?;
                Flow::Next
            }
            None => Flow::Fail,
        })
    }

    /// A builtin's value on `args` read from `frame`: `None` when an argument is undefined or
    /// the builtin is (a builtin error makes the expression undefined, as in OPA's Wasm).
    fn invoke(&mut self, builtin: &Builtin, args: &[Op], frame: &Frame) -> Res<Option<Val>> {
        // The arguments by reference (no reference counts touched): on the stack for every
        // builtin OPA has (at most a few arguments), in a vector past that.
        let mut inline: [&Val; ARGS_INLINE] = [&UNDEFINED_ARG; ARGS_INLINE];
        let mut spilled: Vec<&Val> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let Some(v) = read_ref(frame, a) else {
                return Ok(None);
            };
            match inline.get_mut(i) {
                Some(slot) => *slot = v,
                None => {
                    if spilled.is_empty() {
                        spilled.extend_from_slice(&inline);
                    }
                    spilled.push(v);
                }
            }
        }
        let vals: &[&Val] = if spilled.is_empty() {
            inline.get(..args.len()).unwrap_or_default()
        } else {
            &spilled
        };
        let out = match builtin.imp {
            Impl::Native(f) => f(vals, &mut self.ctx),
            Impl::Host(f) => crate::builtins::call_host(f, vals, &self.ctx),
            Impl::Void => Ok(None),
        };
        match out {
            Ok(v) => Ok(v),
            Err(Fault::Undefined(_)) => Ok(None),
            Err(Fault::TooLarge(what)) => Err(Box::new(EvalError::TooLarge(what))),
            Err(Fault::Abort(why)) => Err(Box::new(EvalError::Aborted(why))),
        }
    }

    #[inline(never)]
    fn object_insert_once(
        &mut self,
        key: &Op,
        value: &Op,
        object: &u32,
        loc: &Loc,
        frame: &mut Frame,
    ) -> Res<Flow> {
        Ok({
            let (Some(k), Some(v)) = (read(frame, key), read(frame, value)) else {
                return Ok(Flow::Fail);
            };
            let conflict = match slot(frame, *object)? {
                Some(Val::Obj(o)) => match o.get(&k) {
                    Some(old) => *old != v,
                    None => {
                        Arc::make_mut(o).insert(k, v);
                        false
                    }
                },
                _ => return Ok(Flow::Fail),
            };
            if conflict {
                return Err(self.conflict("object insert conflict", *loc));
            }
            Flow::Next
        })
    }

    #[inline(never)]
    fn object_merge(&mut self, a: &u32, b: &u32, target: &u32, frame: &mut Frame) -> Res<Flow> {
        Ok({
            let x = frame.get(*a as usize).cloned().flatten();
            let y = frame.get(*b as usize).cloned().flatten();
            let merged = match (x, y) {
                (None, y) => y,
                (Some(x), Some(y)) => Some(merge(x, &y)),
                (Some(x), None) => Some(x),
            };
            set(frame, *target, merged)?;
            Flow::Next
        })
    }

    #[inline(never)]
    fn scan(
        &mut self,
        source: &u32,
        key: &u32,
        value: &u32,
        block: &Block,
        frame: &mut Frame,
    ) -> Res<Flow> {
        Ok({
            // Iterate a snapshot: the body may change the collection's local.
            let Some(coll) = frame.get(*source as usize).cloned().flatten() else {
                return Ok(Flow::Next);
            };
            match &coll {
                Val::Arr(a) => {
                    for (i, e) in a.iter().enumerate() {
                        let k = Val::int(i64::try_from(i).unwrap_or(i64::MAX));
                        if self.iterate(frame, *key, *value, k, e.clone(), block)? {
                            return Ok(Flow::Return);
                        }
                    }
                }
                Val::Obj(o) => {
                    for (k, v) in o.iter() {
                        if self.iterate(frame, *key, *value, k.clone(), v.clone(), block)? {
                            return Ok(Flow::Return);
                        }
                    }
                }
                Val::Set(s) => {
                    for e in s.iter() {
                        if self.iterate(frame, *key, *value, e.clone(), e.clone(), block)? {
                            return Ok(Flow::Return);
                        }
                    }
                }
                _ => {}
            }
            Flow::Next
        })
    }

    #[inline(never)]
    fn with(
        &mut self,
        local: &u32,
        path: &[Val],
        value: &Op,
        block: &Block,
        frame: &mut Frame,
    ) -> Res<Flow> {
        Ok({
            // With no path the local takes the value as it is, undefined included (the
            // plan restores an undefined input this way); a path needs a value to insert.
            let v = read(frame, value);
            let saved = frame.get(*local as usize).cloned().flatten();
            let replaced = match v {
                Some(v) => Some(upsert(saved.clone(), path, v)),
                None if path.is_empty() => None,
                None => return Ok(Flow::Fail),
            };
            set(frame, *local, replaced)?;
            let mut memo = Vec::new();
            memo.resize_with(self.prog.funcs.len(), || None);
            self.memo.push(memo);
            let r = self.body(block, frame);
            self.memo.pop();
            set(frame, *local, saved)?;
            match r? {
                Some(true) => Flow::Next,
                Some(false) => Flow::Fail,
                None => Flow::Return,
            }
        })
    }

    /// One Scan iteration; `true` when the body returned from the function.
    fn iterate(
        &mut self,
        frame: &mut Frame,
        key: u32,
        value: u32,
        k: Val,
        v: Val,
        block: &Block,
    ) -> Res<bool> {
        self.step()?;
        set(frame, key, Some(k))?;
        set(frame, value, Some(v))?;
        Ok(self.body(block, frame)?.is_none())
    }

    /// Counts one step against the budget, and every 4096 steps looks at the clock.
    #[inline(always)]
    fn step(&mut self) -> Res<()> {
        self.steps += 1;
        if self.steps < self.check_at {
            return Ok(());
        }
        self.checkpoint()
    }

    /// The slow half of [`Eval::step`], run when `steps` reaches `check_at`.
    #[cold]
    fn checkpoint(&mut self) -> Res<()> {
        if self.steps > self.limits.max_steps {
            return Err(Box::new(EvalError::StepBudget(self.limits.max_steps)));
        }
        if self.steps % CLOCK_EVERY == 0 {
            if let (Some(deadline), Some(timeout)) = (self.deadline, self.limits.timeout) {
                if Instant::now() >= deadline {
                    return Err(Box::new(EvalError::Deadline(timeout)));
                }
            }
        }
        self.check_at = next_check(self.steps, self.limits.max_steps);
        Ok(())
    }

    fn conflict(&self, what: &'static str, loc: crate::ir::Loc) -> Box<EvalError> {
        let file = self
            .prog
            .files
            .get(loc.file as usize)
            .cloned()
            .unwrap_or_default();
        Box::new(EvalError::Conflict {
            what,
            at: format!("{file}:{}:{}", loc.row, loc.col),
        })
    }
}

impl Drop for Eval<'_> {
    /// Hands the buffers back to the thread, emptied: no value outlives its evaluation.
    fn drop(&mut self) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let filled = std::mem::take(&mut self.memo_filled);
        for (level, mut m) in self.memo.drain(..).enumerate() {
            if m.len() > KEEP_SCRATCH {
                continue;
            }
            if level == 0 {
                // Every value the first memo got is listed: emptying those slots leaves the
                // table all `None` at its length, ready for the next evaluation.
                for &f in &filled {
                    if let Some(slot) = m.get_mut(f) {
                        *slot = None;
                    }
                }
            } else {
                m.clear();
            }
            scratch.memos.push(m);
        }
        scratch.frames.retain(|f| f.capacity() <= KEEP_SCRATCH);
        scratch.frames.truncate(KEEP_SCRATCH);
        scratch.memos.truncate(64);
        let _ = SCRATCH.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut() {
                *s = scratch;
            }
        });
    }
}

fn pass(ok: bool) -> Flow {
    if ok {
        Flow::Next
    } else {
        Flow::Fail
    }
}

#[inline(always)]
fn slot(frame: &mut Frame, l: u32) -> Res<&mut Option<Val>> {
    frame
        .get_mut(l as usize)
        .ok_or_else(|| Box::new(EvalError::Internal(format!("local {l} outside its frame"))))
}

#[inline(always)]
fn set(frame: &mut Frame, l: u32, v: Option<Val>) -> Res<()> {
    *slot(frame, l)? = v;
    Ok(())
}

#[inline(always)]
fn read(frame: &Frame, op: &Op) -> Option<Val> {
    read_ref(frame, op).cloned()
}

#[inline(always)]
fn read_ref<'a>(frame: &'a Frame, op: &'a Op) -> Option<&'a Val> {
    match op {
        Op::Local(l) => frame.get(*l as usize).and_then(Option::as_ref),
        Op::Const(v) => Some(v),
    }
}

/// `source[key]`: an object's value, a set's member, an array's element at an integer index.
pub(crate) fn dot(source: &Val, key: &Val) -> Option<Val> {
    match source {
        Val::Obj(o) => o.get(key).cloned(),
        Val::Set(s) => s.contains(key).then(|| key.clone()),
        Val::Arr(a) => match key {
            Val::Num(n) => {
                let i = usize::try_from(n.as_i64()?).ok()?;
                a.get(i).cloned()
            }
            _ => None,
        },
        _ => None,
    }
}

/// `ObjectMerge`: shared keys merged recursively; a non-object side keeps `a`.
fn merge(a: Val, b: &Val) -> Val {
    match (a, b) {
        (Val::Obj(mut x), Val::Obj(y)) => {
            let m = Arc::make_mut(&mut x);
            for (k, v) in y.iter() {
                let merged = match m.remove(k) {
                    Some(old) => merge(old, v),
                    None => v.clone(),
                };
                m.insert(k.clone(), merged);
            }
            Val::Obj(x)
        }
        (a, _) => a,
    }
}

/// `With`: `base` with `value` at `path` (missing or non-object steps become objects).
fn upsert(base: Option<Val>, path: &[Val], value: Val) -> Val {
    let Some((first, rest)) = path.split_first() else {
        return value;
    };
    let mut obj = match base {
        Some(Val::Obj(o)) => o,
        _ => Arc::new(BTreeMap::new()),
    };
    let m = Arc::make_mut(&mut obj);
    let child = m.remove(first);
    m.insert(first.clone(), upsert(child, rest, value));
    Val::Obj(obj)
}
