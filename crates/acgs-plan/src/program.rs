//! The plan lowered for evaluation and checked on the way: every function and builtin name
//! resolves, every local, string and break depth is in range. A plan that fails a check is
//! refused with the reason, never half-loaded.

use std::collections::HashMap;

use crate::builtins::{self, Builtin};
use crate::ir::{self, BlockDef, Loc, Operand, StmtDef};
use crate::value::{Num, Val};
use crate::{inline, opt, PlanError};

/// Locals a frame may have; plans use a few dozen.
pub(crate) const MAX_LOCALS: u32 = 1 << 16;

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Local(u32),
    Const(Val),
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub stmts: Vec<Stmt>,
}

#[derive(Debug, Clone)]
#[repr(u8)]
pub(crate) enum Stmt {
    ArrayAppend {
        value: Op,
        array: u32,
    },
    AssignInt {
        value: i64,
        target: u32,
    },
    AssignVarOnce {
        source: Op,
        target: u32,
        loc: Loc,
    },
    AssignVar {
        source: Op,
        target: u32,
    },
    Block(Vec<Block>),
    Break(u32),
    CallDynamic {
        args: Vec<Op>,
        result: u32,
        path: Vec<Op>,
    },
    CallFunc {
        func: usize,
        args: Vec<Op>,
        result: u32,
    },
    CallBuiltin {
        builtin: Builtin,
        args: Vec<Op>,
        result: u32,
    },
    Dot {
        source: Op,
        key: Op,
        target: u32,
    },
    Equal(Op, Op),
    NotEqual(Op, Op),
    /// Passes when the operand is defined and of this kind (the plan's IsArray, IsObject and
    /// IsSet, and a fused type-test builtin, see [`crate::opt`]).
    TypeIs(Op, Kind),
    /// A builtin call whose result is only tested: passes when it is defined and not `false`
    /// (see [`crate::opt`]).
    Test {
        builtin: Builtin,
        args: Vec<Op>,
    },
    IsDefined(u32),
    IsUndefined(u32),
    Len {
        source: Op,
        target: u32,
    },
    MakeArray(u32),
    MakeNull(u32),
    MakeObject(u32),
    MakeSet(u32),
    MakeValue {
        value: Val,
        target: u32,
    },
    Nop,
    Not(Block),
    ObjectInsertOnce {
        key: Op,
        value: Op,
        object: u32,
        loc: Loc,
    },
    ObjectInsert {
        key: Op,
        value: Op,
        object: u32,
    },
    ObjectMerge {
        a: u32,
        b: u32,
        target: u32,
    },
    ResetLocal(u32),
    ResultSetAdd(u32),
    ReturnLocal(u32),
    Scan {
        source: u32,
        key: u32,
        value: u32,
        block: Block,
    },
    SetAdd {
        value: Op,
        set: u32,
    },
    With {
        local: u32,
        path: Vec<Val>,
        value: Op,
        block: Block,
    },
}

/// A kind of value, for [`Stmt::TypeIs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Num,
    Str,
    Arr,
    Obj,
    Set,
}

impl Kind {
    #[inline(always)]
    pub(crate) fn holds(self, v: &Val) -> bool {
        matches!(
            (self, v),
            (Kind::Null, Val::Null)
                | (Kind::Bool, Val::Bool(_))
                | (Kind::Num, Val::Num(_))
                | (Kind::Str, Val::Str(_))
                | (Kind::Arr, Val::Arr(_))
                | (Kind::Obj, Val::Obj(_))
                | (Kind::Set, Val::Set(_))
        )
    }
}

#[derive(Debug)]
pub(crate) struct Func {
    pub name: String,
    pub params: Vec<u32>,
    pub ret: u32,
    pub blocks: Vec<Block>,
    pub frame: usize,
    /// Rule values (functions of input and data alone) are memoised per evaluation.
    pub memo: bool,
    /// A rule value that does not depend on its input (see [`Program::find_data_only`]): kept
    /// across evaluations on the same data.
    pub data_only: bool,
    /// Calls a builtin whose result may differ between evaluations (the clock, randomness, the
    /// network), a function by a computed path, or sets up a `With`.
    unsettled: bool,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub blocks: Vec<Block>,
    pub frame: usize,
}

#[derive(Debug)]
pub(crate) struct Program {
    pub funcs: Vec<Func>,
    pub plans: Vec<(String, Entry)>,
    /// `path` of each function reachable through CallDynamic, to its index.
    pub paths: HashMap<Vec<String>, usize>,
    pub files: Vec<String>,
    pub builtin_names: Vec<String>,
    /// Steps the load-time rewrites took, and whether they stopped for want of budget (the
    /// bodies not reached run as written).
    pub rewrite_steps: u64,
    pub rewrites_cut: bool,
}

struct Lower<'a> {
    strings: &'a [ir::StringConst],
    funcs: &'a HashMap<String, usize>,
    /// The plan's local numbers, sparse across a function (OPA numbers them per plan), to
    /// dense frame slots in order of first use: frames are then a few dozen slots, not hundreds.
    slots: HashMap<u32, u32>,
    /// Where the statement being lowered sits, for refusals.
    at: String,
    /// Function calls seen: callee, argument count, caller (checked once all are lowered).
    calls: Vec<(usize, usize, String)>,
    /// See [`Func::unsettled`].
    unsettled: bool,
}

impl Lower<'_> {
    fn refuse(&self, why: String) -> PlanError {
        PlanError::Invalid(format!("{}: {why}", self.at))
    }

    fn local(&mut self, l: u32) -> Result<u32, PlanError> {
        if l >= MAX_LOCALS {
            return Err(self.refuse(format!("local {l} is out of range")));
        }
        let next = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        Ok(*self.slots.entry(l).or_insert(next))
    }

    /// Slots a frame needs.
    fn frame(&self) -> usize {
        self.slots.len().max(1)
    }

    fn string(&self, i: u32) -> Result<&str, PlanError> {
        self.strings
            .get(i as usize)
            .map(|s| s.value.as_str())
            .ok_or_else(|| self.refuse(format!("string index {i} is out of range")))
    }

    fn op(&mut self, o: Operand) -> Result<Op, PlanError> {
        Ok(match o {
            Operand::Local(l) => Op::Local(self.local(l)?),
            Operand::StringIndex(i) => Op::Const(Val::str(self.string(i)?)),
            Operand::Bool(b) => Op::Const(Val::Bool(b)),
        })
    }

    fn ops(&mut self, os: Option<Vec<Operand>>) -> Result<Vec<Op>, PlanError> {
        os.unwrap_or_default()
            .into_iter()
            .map(|o| self.op(o))
            .collect()
    }

    /// `depth`: block levels a `Break` may leave from inside this block (the block itself
    /// included) before it would cross a function, Scan, Not or With body.
    fn block(&mut self, b: BlockDef, depth: u32) -> Result<Block, PlanError> {
        let mut stmts = Vec::new();
        for s in b.stmts.unwrap_or_default() {
            stmts.push(self.stmt(s, depth)?);
        }
        Ok(Block { stmts })
    }

    fn blocks(&mut self, bs: Option<Vec<BlockDef>>, depth: u32) -> Result<Vec<Block>, PlanError> {
        bs.unwrap_or_default()
            .into_iter()
            .map(|b| self.block(b, depth))
            .collect()
    }

    fn stmt(&mut self, s: StmtDef, depth: u32) -> Result<Stmt, PlanError> {
        Ok(match s {
            StmtDef::ArrayAppendStmt { value, array } => Stmt::ArrayAppend {
                value: self.op(value)?,
                array: self.local(array)?,
            },
            StmtDef::AssignIntStmt { value, target } => Stmt::AssignInt {
                value,
                target: self.local(target)?,
            },
            StmtDef::AssignVarOnceStmt {
                source,
                target,
                loc,
            } => Stmt::AssignVarOnce {
                source: self.op(source)?,
                target: self.local(target)?,
                loc,
            },
            StmtDef::AssignVarStmt { source, target } => Stmt::AssignVar {
                source: self.op(source)?,
                target: self.local(target)?,
            },
            StmtDef::BlockStmt { blocks } => Stmt::Block(self.blocks(blocks, depth + 1)?),
            StmtDef::BreakStmt { index } => {
                if index >= depth {
                    return Err(self.refuse(format!(
                        "break {index} leaves more blocks than enclose it ({depth})"
                    )));
                }
                Stmt::Break(index)
            }
            StmtDef::CallDynamicStmt { args, result, path } => {
                self.unsettled = true;
                Stmt::CallDynamic {
                    args: args
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| self.local(a).map(Op::Local))
                        .collect::<Result<_, _>>()?,
                    result: self.local(result)?,
                    path: self.ops(path)?,
                }
            }
            StmtDef::CallStmt { func, args, result } => {
                let args = self.ops(args)?;
                let result = self.local(result)?;
                if let Some(&i) = self.funcs.get(&func) {
                    self.calls.push((i, args.len(), self.at.clone()));
                    Stmt::CallFunc {
                        func: i,
                        args,
                        result,
                    }
                } else if let Some(b) = builtins::lookup(&func) {
                    if !b.arity_ok(args.len()) {
                        return Err(self.refuse(format!(
                            "builtin {func} called with {} arguments",
                            args.len()
                        )));
                    }
                    if !settled_builtin(&func, &b) {
                        self.unsettled = true;
                    }
                    Stmt::CallBuiltin {
                        builtin: b,
                        args,
                        result,
                    }
                } else {
                    return Err(PlanError::UnknownBuiltin(func));
                }
            }
            StmtDef::DotStmt {
                source,
                key,
                target,
            } => Stmt::Dot {
                source: self.op(source)?,
                key: self.op(key)?,
                target: self.local(target)?,
            },
            StmtDef::EqualStmt { a, b } => Stmt::Equal(self.op(a)?, self.op(b)?),
            StmtDef::NotEqualStmt { a, b } => Stmt::NotEqual(self.op(a)?, self.op(b)?),
            StmtDef::IsArrayStmt { source } => Stmt::TypeIs(self.op(source)?, Kind::Arr),
            StmtDef::IsObjectStmt { source } => Stmt::TypeIs(self.op(source)?, Kind::Obj),
            StmtDef::IsSetStmt { source } => Stmt::TypeIs(self.op(source)?, Kind::Set),
            StmtDef::IsDefinedStmt { source } => Stmt::IsDefined(self.local(source)?),
            StmtDef::IsUndefinedStmt { source } => Stmt::IsUndefined(self.local(source)?),
            StmtDef::LenStmt { source, target } => Stmt::Len {
                source: self.op(source)?,
                target: self.local(target)?,
            },
            StmtDef::MakeArrayStmt { target } => Stmt::MakeArray(self.local(target)?),
            StmtDef::MakeNullStmt { target } => Stmt::MakeNull(self.local(target)?),
            StmtDef::MakeObjectStmt { target } => Stmt::MakeObject(self.local(target)?),
            StmtDef::MakeSetStmt { target } => Stmt::MakeSet(self.local(target)?),
            StmtDef::MakeNumberIntStmt { value, target } => Stmt::MakeValue {
                value: Val::Num(Num::int(value)),
                target: self.local(target)?,
            },
            StmtDef::MakeNumberRefStmt {
                index,
                legacy_index,
                target,
            } => {
                let i = index
                    .or(legacy_index)
                    .ok_or_else(|| self.refuse("MakeNumberRefStmt without an index".into()))?;
                let text = self.string(i)?;
                let n = number_literal(text)
                    .ok_or_else(|| self.refuse(format!("{text:?} is not a number")))?;
                Stmt::MakeValue {
                    value: Val::Num(n),
                    target: self.local(target)?,
                }
            }
            StmtDef::NopStmt {} => Stmt::Nop,
            StmtDef::NotStmt { block } => Stmt::Not(self.block(block, 1)?),
            StmtDef::ObjectInsertOnceStmt {
                key,
                value,
                object,
                loc,
            } => Stmt::ObjectInsertOnce {
                key: self.op(key)?,
                value: self.op(value)?,
                object: self.local(object)?,
                loc,
            },
            StmtDef::ObjectInsertStmt { key, value, object } => Stmt::ObjectInsert {
                key: self.op(key)?,
                value: self.op(value)?,
                object: self.local(object)?,
            },
            StmtDef::ObjectMergeStmt { a, b, target } => Stmt::ObjectMerge {
                a: self.local(a)?,
                b: self.local(b)?,
                target: self.local(target)?,
            },
            StmtDef::ResetLocalStmt { target } => Stmt::ResetLocal(self.local(target)?),
            StmtDef::ResultSetAddStmt { value } => Stmt::ResultSetAdd(self.local(value)?),
            StmtDef::ReturnLocalStmt { source } => Stmt::ReturnLocal(self.local(source)?),
            StmtDef::ScanStmt {
                source,
                key,
                value,
                block,
            } => Stmt::Scan {
                source: self.local(source)?,
                key: self.local(key)?,
                value: self.local(value)?,
                block: self.block(block, 1)?,
            },
            StmtDef::SetAddStmt { value, set } => Stmt::SetAdd {
                value: self.op(value)?,
                set: self.local(set)?,
            },
            StmtDef::WithStmt {
                local,
                path,
                value,
                block,
            } => {
                self.unsettled = true;
                Stmt::With {
                    local: self.local(local)?,
                    path: path
                        .unwrap_or_default()
                        .into_iter()
                        .map(|i| self.string(i).map(Val::str))
                        .collect::<Result<_, _>>()?,
                    value: self.op(value)?,
                    block: self.block(block, 1)?,
                }
            }
        })
    }
}

/// A number literal of the plan: JSON's syntax, and Rego's `.5` / `-.5` (no digit before the
/// point), which OPA's parser accepts and keeps as written.
fn number_literal(text: &str) -> Option<Num> {
    if let Some(n) = Num::parse(text) {
        return Some(n);
    }
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    if !rest.starts_with('.') {
        return None;
    }
    Num::parse(&format!("{sign}0{rest}"))
}

/// Whether a builtin's result depends on its arguments alone: every native one does (the random
/// ones are host builtins); a host one unless it is on the one list of non-deterministic
/// builtins.
fn settled_builtin(name: &str, b: &Builtin) -> bool {
    match b.imp {
        builtins::Impl::Native(_) | builtins::Impl::Void => true,
        builtins::Impl::Host(_) => !acgs_rego::nondeterministic::is_nondeterministic(name),
    }
}

/// Whether `stmts` read local `input` other than by handing it on as the input (first
/// argument) of a function in `free`, or call a function not in `free`.
fn reads_input(stmts: &[Stmt], input: u32, free: &[bool]) -> bool {
    stmts.iter().any(|s| {
        let here = match s {
            Stmt::CallDynamic { .. } | Stmt::With { .. } => true,
            // A callee that is not settled taints its caller, whatever it is handed.
            Stmt::CallFunc { func, args, result } => {
                *result == input
                    || !free.get(*func).copied().unwrap_or(false)
                    || args
                        .iter()
                        .skip(1)
                        .any(|o| matches!(o, Op::Local(l) if *l == input))
            }
            Stmt::Scan { key, value, .. } => {
                *key == input || *value == input || opt::touches(s, input)
            }
            other => opt::touches(other, input),
        };
        here || opt::nested(s)
            .iter()
            .any(|b| reads_input(&b.stmts, input, free))
    })
}

impl Program {
    /// Inlines the small functions into their callers (see [`inline`]), optimises the callers
    /// again, and numbers every frame densely; [`inline::ROUNDS`] times, so a helper of a
    /// helper is inlined too.
    fn inline_and_compact(funcs: &mut [Func], plans: &mut [(String, Entry)], budget: &opt::Budget) {
        let mut growth = 0;
        for _ in 0..inline::ROUNDS {
            let table: Vec<Option<inline::Inlinable>> = funcs
                .iter()
                .map(|f| {
                    if f.memo {
                        None
                    } else {
                        inline::Inlinable::of(&f.params, f.ret, f.frame, &f.blocks)
                    }
                })
                .collect();
            let unsettled: Vec<bool> = funcs.iter().map(|f| f.unsettled).collect();
            let mut any = false;
            for f in funcs.iter_mut() {
                let inlined =
                    inline::inline_calls(&mut f.blocks, &mut f.frame, &table, &mut growth);
                if !inlined.is_empty() {
                    any = true;
                    // A callee's unsettled calls are the caller's own now.
                    f.unsettled |= inlined
                        .iter()
                        .any(|&c| unsettled.get(c).copied().unwrap_or(true));
                    let mut fixed = f.params.clone();
                    fixed.push(f.ret);
                    opt::optimise(&mut f.blocks, &fixed, Some(f.ret), budget);
                    f.blocks.retain(|b| !b.stmts.is_empty());
                }
                let mut keep = f.params.clone();
                keep.push(f.ret);
                f.frame = inline::compact(&mut f.blocks, &mut keep);
                f.ret = keep.pop().unwrap_or(f.ret);
                f.params = keep;
            }
            for (_, e) in plans.iter_mut() {
                let inlined =
                    inline::inline_calls(&mut e.blocks, &mut e.frame, &table, &mut growth);
                if !inlined.is_empty() {
                    any = true;
                    opt::optimise(&mut e.blocks, &[0, 1], None, budget);
                    e.blocks.retain(|b| !b.stmts.is_empty());
                }
                // A plan's input and data stay in slots 0 and 1.
                e.frame = inline::compact(&mut e.blocks, &mut [0, 1]).max(2);
            }
            if !any {
                break;
            }
        }
    }

    /// Marks the rule values that depend on data alone: functions of (input, data) that never
    /// read their input except to hand it, as input, to functions that do not read theirs
    /// either, and that call nothing unsettled. Found as the greatest fixpoint, so a cycle
    /// (which Rego does not produce) cannot make a function look settled by assuming it.
    fn find_data_only(funcs: &mut [Func]) {
        let mut free: Vec<bool> = funcs
            .iter()
            .map(|f| !f.unsettled && !f.params.is_empty())
            .collect();
        loop {
            let mut changed = false;
            for (i, f) in funcs.iter().enumerate() {
                if free.get(i).copied().unwrap_or(false) {
                    let input = f.params.first().copied().unwrap_or(u32::MAX);
                    if f.blocks.iter().any(|b| reads_input(&b.stmts, input, &free)) {
                        if let Some(x) = free.get_mut(i) {
                            *x = false;
                        }
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        for (f, free) in funcs.iter_mut().zip(free) {
            f.data_only = free && f.memo;
        }
    }

    pub(crate) fn lower(file: ir::PlanFile) -> Result<Program, PlanError> {
        let statics = file.statics.unwrap_or_default();
        let strings = statics.strings.unwrap_or_default();
        let files = statics
            .files
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.value)
            .collect();
        let builtin_names: Vec<String> = statics
            .builtin_funcs
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.name)
            .collect();
        // Every declared builtin must exist here, whether or not a statement calls it.
        for name in &builtin_names {
            if builtins::lookup(name).is_none() {
                return Err(PlanError::UnknownBuiltin(name.clone()));
            }
        }
        let defs = file.funcs.and_then(|f| f.funcs).unwrap_or_default();
        let mut index = HashMap::new();
        for (i, f) in defs.iter().enumerate() {
            if index.insert(f.name.clone(), i).is_some() {
                return Err(PlanError::Invalid(format!(
                    "function {} is defined twice",
                    f.name
                )));
            }
        }
        let mut funcs = Vec::with_capacity(defs.len());
        let mut calls = Vec::new();
        let budget = opt::Budget::new(opt::BUDGET);
        let mut paths = HashMap::new();
        for (i, f) in defs.into_iter().enumerate() {
            let mut lower = Lower {
                strings: &strings,
                funcs: &index,
                slots: HashMap::new(),
                at: format!("function {}", f.name),
                calls: Vec::new(),
                unsettled: false,
            };
            let params = f
                .params
                .iter()
                .map(|&p| lower.local(p))
                .collect::<Result<Vec<_>, _>>()?;
            let ret = lower.local(f.ret)?;
            let mut blocks = lower.blocks(f.blocks, 1)?;
            let mut fixed = params.clone();
            fixed.push(ret);
            opt::optimise(&mut blocks, &fixed, Some(ret), &budget);
            blocks.retain(|b| !b.stmts.is_empty());
            if let Some(path) = f.path {
                paths.insert(path, i);
            }
            calls.append(&mut lower.calls);
            funcs.push(Func {
                data_only: false,
                unsettled: lower.unsettled,
                memo: params.len() == 2,
                name: f.name,
                params,
                ret,
                blocks,
                frame: lower.frame(),
            });
        }
        let mut plans = Vec::new();
        for p in file.plans.and_then(|p| p.plans).unwrap_or_default() {
            let mut lower = Lower {
                strings: &strings,
                funcs: &index,
                slots: HashMap::new(),
                at: format!("plan {}", p.name),
                calls: Vec::new(),
                unsettled: false,
            };
            // A plan's locals 0 and 1 are its input and data: they keep their slots.
            let fixed = [lower.local(0)?, lower.local(1)?];
            let mut blocks = lower.blocks(p.blocks, 1)?;
            opt::optimise(&mut blocks, &fixed, None, &budget);
            blocks.retain(|b| !b.stmts.is_empty());
            calls.append(&mut lower.calls);
            plans.push((
                p.name,
                Entry {
                    blocks,
                    frame: lower.frame(),
                },
            ));
        }
        for (callee, nargs, caller) in calls {
            let f = funcs
                .get(callee)
                .ok_or_else(|| PlanError::Invalid(format!("{caller}: no function {callee}")))?;
            if f.params.len() != nargs {
                return Err(PlanError::Invalid(format!(
                    "{caller}: calls {} with {nargs} arguments; it takes {}",
                    f.name,
                    f.params.len()
                )));
            }
        }
        Program::inline_and_compact(&mut funcs, &mut plans, &budget);
        Program::find_data_only(&mut funcs);
        Ok(Program {
            funcs,
            plans,
            paths,
            files,
            builtin_names,
            rewrite_steps: opt::BUDGET - budget.left(),
            rewrites_cut: budget.spent(),
        })
    }
}
