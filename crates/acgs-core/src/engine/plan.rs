//! The engine's side of the plan evaluator ([`acgs_plan`]): a bundle's `/plan.json` checked at
//! load, its data parsed once, and evaluations answered with the same bytes and the same errors
//! as the bundle's Wasm.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use acgs_plan::{EvalError, Plan, Val};

use crate::error::{Error, Result};
use crate::wasm::{Format, Limits};

/// Statements (and Scan iterations) one evaluation may run. The deadline is the bound that
/// matters; this only stops a policy run without one (`timeout_ms: 0`) that would otherwise
/// never end. It is far past what any policy the suite or the benchmarks run needs.
const MAX_STEPS: u64 = 500_000_000;

/// A bundle's plan, ready to answer any entrypoint the Wasm also exports.
pub(crate) struct PlanEvaluator {
    plan: Plan,
    data: Val,
    /// Plan entrypoint index by Wasm entrypoint id.
    by_id: HashMap<i32, usize>,
    limits: Limits,
    /// Bytes of the data document, which the Wasm holds in the same linear memory as the input.
    data_bytes: u64,
}

impl std::fmt::Debug for PlanEvaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanEvaluator")
            .field("entrypoints", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

impl PlanEvaluator {
    /// Checks `plan_json` and pairs its entrypoints with the Wasm's. `data_json` is the data
    /// document exactly as the Wasm reads it. The error names why the plan cannot be used.
    pub(crate) fn load(
        plan_json: Option<&[u8]>,
        entrypoints: &BTreeMap<String, i32>,
        data_json: &[u8],
        limits: Limits,
    ) -> std::result::Result<PlanEvaluator, String> {
        let raw = plan_json.ok_or("the bundle carries no /plan.json")?;
        let plan = Plan::from_json(raw).map_err(|e| e.to_string())?;
        let mut by_id = HashMap::with_capacity(entrypoints.len());
        let mut missing: Vec<&str> = Vec::new();
        for (name, id) in entrypoints {
            match plan.entrypoint(name) {
                Some(ix) => {
                    by_id.insert(*id, ix);
                }
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(format!(
                "the plan lacks entrypoint(s) the Wasm exports: {}",
                missing.join(", ")
            ));
        }
        let data = if data_json.is_empty() {
            Val::empty_object()
        } else {
            Val::parse(data_json).map_err(|e| format!("the data document does not parse: {e}"))?
        };
        Ok(PlanEvaluator {
            plan,
            data,
            by_id,
            limits,
            data_bytes: data_json.len() as u64,
        })
    }

    /// Steps the plan's load-time rewrites took, and whether their budget cut them short.
    pub(crate) fn rewrites(&self) -> (u64, bool) {
        self.plan.rewrites()
    }

    /// Evaluates Wasm entrypoint `ep` on raw `input` and writes the result set as the Wasm
    /// would for `format`.
    pub(crate) fn eval(&self, ep: i32, input: Option<&[u8]>, format: Format) -> Result<Vec<u8>> {
        let ix = *self
            .by_id
            .get(&ep)
            .ok_or_else(|| Error::UnknownEntrypoint(format!("entrypoint id {ep}")))?;
        let input = match input {
            // The Wasm copies the input into its linear memory first: one that cannot fit beside
            // the data is refused there with its memory cap, so here too.
            Some(bytes) if bytes.len() as u64 + self.data_bytes > self.limits.memory_bytes => {
                return Err(Error::MemoryLimit(self.limits.memory_bytes))
            }
            // The Wasm's parser aborts on a surrogate escape without a second unit after it.
            Some(bytes) if lone_surrogate(bytes) => {
                return Err(Error::Evaluation("illegal string escape character".into()))
            }
            Some(bytes) => Some(Val::parse(bytes).map_err(|e| {
                if e.contains("nested too deeply") {
                    // The Wasm's recursive parser runs out of stack on such input: a trap.
                    Error::Evaluation(format!("policy trapped: the input is {e}"))
                } else {
                    Error::InvalidInput("the policy could not parse the input".into())
                }
            })?),
            None => None,
        };
        let limits = acgs_plan::Limits {
            max_steps: MAX_STEPS,
            timeout: (self.limits.timeout_ms > 0)
                .then(|| Duration::from_millis(self.limits.timeout_ms)),
            ..acgs_plan::Limits::default()
        };
        let results = self
            .plan
            .eval(ix, input.as_ref(), &self.data, limits)
            .map_err(|e| self.error(e))?;
        Ok(write_result_set(results.iter(), format))
    }

    /// The engine error the Wasm gives for the same fault.
    fn error(&self, e: EvalError) -> Error {
        match e {
            EvalError::Conflict { .. } => Error::Evaluation(e.to_string()),
            // A policy that runs past its budget is the Wasm's deadline: both stop work that
            // would otherwise take unbounded time.
            EvalError::Deadline(_) | EvalError::StepBudget(_) => {
                Error::Timeout(self.limits.timeout_ms)
            }
            // The Wasm runs out of linear memory building such a value.
            EvalError::TooLarge(_) => Error::MemoryLimit(self.limits.memory_bytes),
            EvalError::CallDepth(_) => Error::Evaluation(format!("policy trapped: {e}")),
            EvalError::Aborted(why) => Error::Evaluation(why.to_owned()),
            EvalError::Internal(_) => Error::Internal(e.to_string()),
        }
    }
}

/// Whether a `\\uD800`-`\\uDFFF` escape is not followed by another `\\uXXXX` unit, which OPA's
/// Wasm refuses (as an evaluation error) where other parsers substitute a replacement character.
fn lone_surrogate(bytes: &[u8]) -> bool {
    let unit = |at: usize| -> Option<u32> {
        let esc = bytes.get(at..at + 6)?;
        if esc.first() != Some(&b'\\') || esc.get(1) != Some(&b'u') {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(esc.get(2..)?).ok()?, 16).ok()
    };
    let mut i = 0;
    while let Some(off) = bytes.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let at = i + off;
        match unit(at) {
            Some(u) if (0xD800..=0xDFFF).contains(&u) => {
                if unit(at + 6).is_none() {
                    return true;
                }
                i = at + 12;
            }
            Some(_) => i = at + 6,
            None => i = at + 2,
        }
    }
    false
}

/// The result set as OPA's Wasm dumps it: `[{"result":...}]` (JSON: sets as arrays, non-string
/// keys as their JSON text) or `{{"result": ...}}` (Rego value text, `", "` and `": "` between
/// members), numbers as spelt, strings escaped as the Wasm escapes them. One difference stays:
/// the Wasm lists the members of an object or set in its hash-table order, this in Rego's
/// order (sorted).
fn write_result_set<'a>(results: impl Iterator<Item = &'a Val>, format: Format) -> Vec<u8> {
    let rego = format == Format::Rego;
    let mut out = Vec::with_capacity(256);
    let mut first = true;
    out.extend_from_slice(if rego { b"{" } else { b"[" });
    for r in results {
        if !first {
            out.extend_from_slice(if rego { b", " } else { b"," });
        }
        first = false;
        write_value(&mut out, r, rego);
    }
    if rego && first {
        return b"set()".to_vec();
    }
    out.extend_from_slice(if rego { b"}" } else { b"]" });
    out
}

fn write_value(out: &mut Vec<u8>, v: &Val, rego: bool) {
    let sep: &[u8] = if rego { b", " } else { b"," };
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::Num(n) => out.extend_from_slice(n.text().as_bytes()),
        Val::Str(s) => write_string(out, s),
        Val::Arr(a) => write_seq(out, b'[', b']', a.iter(), sep, rego),
        Val::Set(s) if rego && s.is_empty() => out.extend_from_slice(b"set()"),
        Val::Set(s) if rego => write_seq(out, b'{', b'}', s.iter(), sep, rego),
        Val::Set(s) => write_seq(out, b'[', b']', s.iter(), sep, rego),
        Val::Obj(o) => {
            out.push(b'{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(sep);
                }
                match k {
                    Val::Str(_) => write_value(out, k, rego),
                    other if rego => write_value(out, other, rego),
                    other => {
                        let mut key = Vec::new();
                        write_value(&mut key, other, false);
                        write_string(out, &String::from_utf8_lossy(&key));
                    }
                }
                out.extend_from_slice(if rego { b": " } else { b":" });
                write_value(out, v, rego);
            }
            out.push(b'}');
        }
    }
}

fn write_seq<'a>(
    out: &mut Vec<u8>,
    open: u8,
    close: u8,
    items: impl Iterator<Item = &'a Val>,
    sep: &[u8],
    rego: bool,
) {
    out.push(open);
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        write_value(out, v, rego);
    }
    out.push(close);
}

/// OPA's Wasm string escaping: `"` and `\\` escaped, `\n` `\r` `\t` by name, other control
/// bytes as `\u00XX`, everything else (UTF-8) as it is.
fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < b' ' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                let hex = |n: u8| HEX.get(usize::from(n)).copied().unwrap_or(b'0');
                out.push(hex(c >> 4));
                out.push(hex(c & 15));
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}
