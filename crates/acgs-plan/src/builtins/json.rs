//! `json.remove`, `json.filter`, `json.marshal`, `json.unmarshal` and `json.is_valid`, with the
//! semantics of OPA's Wasm library (and topdown's where the Wasm's would crash: a path into an
//! array element or set member it does not name).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{arg, boolean, str_arg, string, Ctx, Fault, Out, MAX_ELEMS};
use crate::value::Val;

/// Paths longer than this are refused: the tree built from them is walked recursively.
const MAX_PATH_SEGMENTS: usize = 1024;

/// The paths of `json.remove`/`json.filter` as a tree: a leaf selects a whole subtree.
enum Node {
    Leaf,
    Inner(BTreeMap<Val, Node>),
}

/// A path given as `"a/b/c"` (a JSON pointer, `~1` for `/` and `~0` for `~`) or as an array of
/// keys; `None` for any other value.
fn parse_path(p: &Val) -> Option<Vec<Val>> {
    match p {
        Val::Str(s) if s.is_empty() => Some(Vec::new()),
        Val::Str(s) => Some(
            s.trim_start_matches('/')
                .split('/')
                .map(|part| Val::str(&part.replace("~1", "/").replace("~0", "~")))
                .collect(),
        ),
        Val::Arr(a) => Some(a.to_vec()),
        _ => None,
    }
}

/// The tree of an array or a set of paths. A path through an existing leaf adds nothing; a
/// path ending on an inner node makes it a leaf; the empty path selects nothing.
fn paths_tree(paths: &Val) -> Result<Option<BTreeMap<Val, Node>>, Fault> {
    let items: Box<dyn Iterator<Item = &Val>> = match paths {
        Val::Arr(a) => Box::new(a.iter()),
        Val::Set(s) => Box::new(s.iter()),
        _ => return Ok(None),
    };
    let mut root = BTreeMap::new();
    let mut segments = 0usize;
    'paths: for p in items {
        let Some(path) = parse_path(p) else {
            return Ok(None);
        };
        segments = segments.saturating_add(path.len());
        if path.len() > MAX_PATH_SEGMENTS || segments > MAX_ELEMS {
            return Err(Fault::TooLarge("path"));
        }
        let Some((last, init)) = path.split_last() else {
            continue;
        };
        let mut node = &mut root;
        for k in init {
            match node
                .entry(k.clone())
                .or_insert_with(|| Node::Inner(BTreeMap::new()))
            {
                Node::Leaf => continue 'paths,
                Node::Inner(m) => node = m,
            }
        }
        node.insert(last.clone(), Node::Leaf);
    }
    Ok(Some(root))
}

/// An array element's key in the tree: its index as a string, as the Wasm (and topdown) look
/// it up.
fn index_key(i: usize) -> Val {
    Val::str(&i.to_string())
}

/// `a` without the parts the tree selects (`None`: all of it).
fn remove(a: &Val, b: Option<&Node>) -> Option<Val> {
    let m = match b {
        None => return Some(a.clone()),
        Some(Node::Leaf) => return None,
        Some(Node::Inner(m)) => m,
    };
    Some(match a {
        Val::Obj(o) => Val::Obj(Arc::new(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), remove(v, m.get(k))?)))
                .collect(),
        )),
        Val::Set(s) => Val::Set(Arc::new(
            s.iter().filter_map(|e| remove(e, m.get(e))).collect(),
        )),
        Val::Arr(x) => Val::Arr(Arc::new(
            x.iter()
                .enumerate()
                .filter_map(|(i, v)| remove(v, m.get(&index_key(i))))
                .collect(),
        )),
        scalar => scalar.clone(),
    })
}

/// Only the parts of `a` the tree selects.
fn filter(a: &Val, b: &Node) -> Val {
    let m = match b {
        Node::Leaf => return a.clone(),
        Node::Inner(m) => m,
    };
    match a {
        Val::Obj(o) => {
            let out: BTreeMap<Val, Val> = if o.len() <= m.len() {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), filter(v, m.get(k)?))))
                    .collect()
            } else {
                m.iter()
                    .filter_map(|(k, n)| Some((k.clone(), filter(o.get(k)?, n))))
                    .collect()
            };
            Val::Obj(Arc::new(out))
        }
        Val::Set(s) => {
            let out: BTreeSet<Val> = s
                .iter()
                .filter_map(|e| Some(filter(e, m.get(e)?)))
                .collect();
            Val::Set(Arc::new(out))
        }
        Val::Arr(x) => Val::Arr(Arc::new(
            x.iter()
                .enumerate()
                .filter_map(|(i, v)| Some(filter(v, m.get(&index_key(i))?)))
                .collect(),
        )),
        scalar => scalar.clone(),
    }
}

pub(super) fn json_remove(a: &[&Val], _: &mut Ctx) -> Out {
    let obj = arg(a, 0)?;
    if !matches!(obj, Val::Obj(_)) {
        return Ok(None);
    }
    let Some(tree) = paths_tree(arg(a, 1)?)? else {
        return Ok(None);
    };
    Ok(remove(obj, Some(&Node::Inner(tree))))
}

pub(super) fn json_filter(a: &[&Val], _: &mut Ctx) -> Out {
    let obj = arg(a, 0)?;
    if !matches!(obj, Val::Obj(_)) {
        return Ok(None);
    }
    let Some(tree) = paths_tree(arg(a, 1)?)? else {
        return Ok(None);
    };
    Ok(Some(filter(obj, &Node::Inner(tree))))
}

/// Compact JSON text as OPA's Wasm dumps it (`opa_json_dump`): numbers as written, sets as
/// arrays, non-string keys as their JSON text.
pub(super) fn json_marshal(a: &[&Val], _: &mut Ctx) -> Out {
    string(arg(a, 0)?.to_json())
}

/// The value of a JSON text (numbers exact); text that is not JSON is undefined.
pub(super) fn json_unmarshal(a: &[&Val], _: &mut Ctx) -> Out {
    let text = str_arg(a, 0)?;
    parse_json(text)
}

/// Whether the operand is a string holding one JSON value (anything else: false).
pub(super) fn json_is_valid(a: &[&Val], _: &mut Ctx) -> Out {
    let ok = match arg(a, 0)? {
        Val::Str(s) => parse_json(s)?.is_some(),
        _ => false,
    };
    boolean(ok)
}

/// Nesting of JSON text the parser reads (`serde_json`'s own limit). Deeper text is an error
/// of the evaluation, not "not JSON": OPA's Wasm traps on it (its recursive parser runs out of
/// memory) while OPA itself reads it, so neither `false` nor undefined would be its answer.
const MAX_TEXT_DEPTH: usize = 128;

/// Strict JSON only (checked by `serde_json`): [`Val::parse`], which keeps numbers exact, also
/// reads Rego's set syntax and non-string keys, which JSON text must not contain.
fn parse_json(text: &str) -> Result<Option<Val>, Fault> {
    if nesting(text) > MAX_TEXT_DEPTH {
        return Err(Fault::TooLarge("JSON text nesting"));
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return Ok(None);
    }
    Ok(Val::parse(text.as_bytes()).ok())
}

/// The deepest nesting of arrays and objects in JSON text (brackets inside strings skipped).
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}
