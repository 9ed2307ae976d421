//! The plan as `opa build -t plan` writes it (`/plan.json`), read with serde. Only the fields the
//! evaluator needs; locations are kept for the statements that can raise a conflict.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct PlanFile {
    #[serde(rename = "static", default)]
    pub statics: Option<Static>,
    #[serde(default)]
    pub plans: Option<Plans>,
    #[serde(default)]
    pub funcs: Option<Funcs>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Static {
    #[serde(default)]
    pub strings: Option<Vec<StringConst>>,
    #[serde(default)]
    pub builtin_funcs: Option<Vec<BuiltinDecl>>,
    #[serde(default)]
    pub files: Option<Vec<StringConst>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StringConst {
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BuiltinDecl {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Plans {
    #[serde(default)]
    pub plans: Option<Vec<PlanDef>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlanDef {
    pub name: String,
    #[serde(default)]
    pub blocks: Option<Vec<BlockDef>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Funcs {
    #[serde(default)]
    pub funcs: Option<Vec<FuncDef>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FuncDef {
    pub name: String,
    pub params: Vec<u32>,
    #[serde(rename = "return")]
    pub ret: u32,
    #[serde(default)]
    pub blocks: Option<Vec<BlockDef>>,
    #[serde(default)]
    pub path: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BlockDef {
    #[serde(default)]
    pub stmts: Option<Vec<StmtDef>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(tag = "type", content = "value")]
pub(crate) enum Operand {
    #[serde(rename = "local")]
    Local(u32),
    #[serde(rename = "string_index")]
    StringIndex(u32),
    #[serde(rename = "bool")]
    Bool(bool),
}

/// Where a statement came from (index into `static.files`, 1-based row and column).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct Loc {
    #[serde(default)]
    pub file: u32,
    #[serde(default)]
    pub row: u32,
    #[serde(default)]
    pub col: u32,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "stmt")]
// The variant names are OPA's statement type names, as plan.json spells them.
#[allow(clippy::enum_variant_names)]
pub(crate) enum StmtDef {
    ArrayAppendStmt {
        value: Operand,
        array: u32,
    },
    AssignIntStmt {
        value: i64,
        target: u32,
    },
    AssignVarOnceStmt {
        source: Operand,
        target: u32,
        #[serde(flatten)]
        loc: Loc,
    },
    AssignVarStmt {
        source: Operand,
        target: u32,
    },
    BlockStmt {
        #[serde(default)]
        blocks: Option<Vec<BlockDef>>,
    },
    BreakStmt {
        index: u32,
    },
    CallDynamicStmt {
        #[serde(default)]
        args: Option<Vec<u32>>,
        result: u32,
        #[serde(default)]
        path: Option<Vec<Operand>>,
    },
    CallStmt {
        func: String,
        #[serde(default)]
        args: Option<Vec<Operand>>,
        result: u32,
    },
    DotStmt {
        source: Operand,
        key: Operand,
        target: u32,
    },
    EqualStmt {
        a: Operand,
        b: Operand,
    },
    NotEqualStmt {
        a: Operand,
        b: Operand,
    },
    IsArrayStmt {
        source: Operand,
    },
    IsObjectStmt {
        source: Operand,
    },
    IsSetStmt {
        source: Operand,
    },
    IsDefinedStmt {
        source: u32,
    },
    IsUndefinedStmt {
        source: u32,
    },
    LenStmt {
        source: Operand,
        target: u32,
    },
    MakeArrayStmt {
        target: u32,
    },
    MakeNullStmt {
        target: u32,
    },
    MakeObjectStmt {
        target: u32,
    },
    MakeSetStmt {
        target: u32,
    },
    MakeNumberIntStmt {
        value: i64,
        target: u32,
    },
    /// OPA writes the string index twice: `index` and the legacy `Index`.
    MakeNumberRefStmt {
        #[serde(default)]
        index: Option<u32>,
        #[serde(rename = "Index", default)]
        legacy_index: Option<u32>,
        target: u32,
    },
    NopStmt {},
    NotStmt {
        block: BlockDef,
    },
    ObjectInsertOnceStmt {
        key: Operand,
        value: Operand,
        object: u32,
        #[serde(flatten)]
        loc: Loc,
    },
    ObjectInsertStmt {
        key: Operand,
        value: Operand,
        object: u32,
    },
    ObjectMergeStmt {
        a: u32,
        b: u32,
        target: u32,
    },
    ResetLocalStmt {
        target: u32,
    },
    ResultSetAddStmt {
        value: u32,
    },
    ReturnLocalStmt {
        source: u32,
    },
    ScanStmt {
        source: u32,
        key: u32,
        value: u32,
        block: BlockDef,
    },
    SetAddStmt {
        value: Operand,
        set: u32,
    },
    WithStmt {
        local: u32,
        #[serde(default)]
        path: Option<Vec<u32>>,
        value: Operand,
        block: BlockDef,
    },
}
