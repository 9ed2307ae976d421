//! json.patch: RFC 6902 operations with OPA's extensions — paths may be arrays of arbitrary
//! terms, and a path segment addresses a set member by the member itself.

use super::{arg, err, type_err, BuiltinError, BuiltinResult, Context};
use crate::value::{Number, Value};

type Res<T> = Result<T, BuiltinError>;

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "ast.Null",
        Value::Bool(_) => "ast.Boolean",
        Value::Number(_) => "ast.Number",
        Value::String(_) => "ast.String",
        Value::Array(_) => "*ast.Array",
        Value::Object(_) => "*ast.object",
        Value::Set(_) => "*ast.set",
    }
}

fn parse_path(p: &Value) -> Res<Vec<Value>> {
    match p {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(s
            .trim_start_matches('/')
            .split('/')
            .map(|part| Value::String(part.replace("~1", "/").replace("~0", "~")))
            .collect()),
        Value::Array(a) => Ok(a.clone()),
        other => err(format!(
            "operand 2 must be one of {{set, array}} containing string paths or array of path segments but got {}",
            other.type_name()
        )),
    }
}

/// Array index for a path segment; `len` stands for "-" (one past the end).
fn to_index(len: usize, key: &Value) -> Res<i64> {
    match key {
        Value::Number(Number::Int(i)) => Ok(*i),
        Value::Number(_) => err("invalid number type for indexing"),
        Value::String(s) if s == "-" => i64::try_from(len).or_else(|_| err("index out of range")),
        Value::String(s) => {
            let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
            let i = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                s.parse::<i64>().ok()
            } else {
                None
            };
            let i = i.ok_or_else(|| BuiltinError("invalid string for indexing".into()))?;
            if s != "0" && s.starts_with('0') {
                return err("leading zeros are not allowed in JSON paths");
            }
            Ok(i)
        }
        _ => err("invalid type for indexing"),
    }
}

fn checked_index(i: i64, upper_inclusive: usize) -> Option<usize> {
    usize::try_from(i).ok().filter(|&i| i <= upper_inclusive)
}

/// Rebuilds `node` with `f` applied to the container at `path` (OPA's `Unfold`, then an edit).
fn modify(node: &Value, path: &[Value], f: &mut dyn FnMut(&Value) -> Res<Value>) -> Res<Value> {
    let Some((key, rest)) = path.split_first() else {
        return f(node);
    };
    match node {
        Value::Object(o) => {
            let child = o.get(key).ok_or_else(|| {
                BuiltinError(format!("path {key} does not exist in object term {node}"))
            })?;
            let new_child = modify(child, rest, f)?;
            let mut o = o.clone();
            o.insert(key.clone(), new_child);
            Ok(Value::Object(o))
        }
        Value::Set(s) => {
            let child = s.get(key).ok_or_else(|| {
                BuiltinError(format!("path [{key}] does not exist in set term {node}"))
            })?;
            let new_child = modify(child, rest, f)?;
            let mut s = s.clone();
            s.remove(key);
            s.insert(new_child);
            Ok(Value::Set(s))
        }
        Value::Array(a) => {
            let idx = to_index(a.len(), key)?;
            let pos = checked_index(idx, a.len()).filter(|&i| i < a.len());
            let Some(child) = pos.and_then(|i| a.get(i)) else {
                return err(format!("path {idx} does not exist in array term {node}"));
            };
            let new_child = modify(child, rest, f)?;
            let mut a = a.clone();
            if let Some(slot) = pos.and_then(|i| a.get_mut(i)) {
                *slot = new_child;
            }
            Ok(Value::Array(a))
        }
        other => err(format!(
            "expected composite type for path {key}, found value: {other} (type: {})",
            go_type(other)
        )),
    }
}

fn lookup_at<'a>(node: &'a Value, path: &[Value]) -> Res<&'a Value> {
    let Some((key, rest)) = path.split_first() else {
        return Ok(node);
    };
    let child = match node {
        Value::Object(o) => o.get(key).ok_or_else(|| {
            BuiltinError(format!("path {key} does not exist in object term {node}"))
        })?,
        Value::Set(s) => s.get(key).ok_or_else(|| {
            BuiltinError(format!("path [{key}] does not exist in set term {node}"))
        })?,
        Value::Array(a) => {
            let idx = to_index(a.len(), key)?;
            checked_index(idx, a.len())
                .and_then(|i| a.get(i))
                .ok_or_else(|| {
                    BuiltinError(format!("path {idx} does not exist in array term {node}"))
                })?
        }
        other => {
            return err(format!(
                "expected composite type for path {key}, found value: {other} (type: {})",
                go_type(other)
            ))
        }
    };
    lookup_at(child, rest)
}

fn insert_into(container: &Value, key: &Value, value: &Value) -> Res<Value> {
    match container {
        Value::Object(o) => {
            let mut o = o.clone();
            o.insert(key.clone(), value.clone());
            Ok(Value::Object(o))
        }
        Value::Set(s) => {
            if key != value {
                return err(format!(
                    "set key {key} does not equal value to be inserted {value}"
                ));
            }
            let mut s = s.clone();
            s.insert(value.clone());
            Ok(Value::Set(s))
        }
        Value::Array(a) => {
            let idx = to_index(a.len(), key)?;
            let i = checked_index(idx, a.len())
                .ok_or_else(|| BuiltinError("index for array insertion out of bounds".into()))?;
            let mut a = a.clone();
            a.insert(i, value.clone());
            Ok(Value::Array(a))
        }
        other => err(format!(
            "expected composite type, found value: {other} (type: {})",
            go_type(other)
        )),
    }
}

fn delete_from(container: &Value, key: &Value) -> Res<Value> {
    let missing = || BuiltinError(format!("cannot delete child key {key} that does not exist"));
    match container {
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove(key).ok_or_else(missing)?;
            Ok(Value::Object(o))
        }
        Value::Set(s) => {
            let mut s = s.clone();
            if !s.remove(key) {
                return Err(missing());
            }
            Ok(Value::Set(s))
        }
        Value::Array(a) => {
            let idx = to_index(a.len(), key)?;
            let i = checked_index(idx, a.len())
                .filter(|&i| i < a.len())
                .ok_or_else(|| BuiltinError("index for array delete out of bounds".into()))?;
            let mut a = a.clone();
            a.remove(i);
            Ok(Value::Array(a))
        }
        other => err(format!(
            "expected composite type, found value: {other} (type: {})",
            go_type(other)
        )),
    }
}

fn insert_at(root: Option<Value>, path: &[Value], value: &Value) -> Res<Option<Value>> {
    let Some((last, parent)) = path.split_last() else {
        return Ok(Some(value.clone()));
    };
    let root = root.ok_or_else(|| {
        BuiltinError("nil value encountered where composite value was expected".into())
    })?;
    modify(&root, parent, &mut |c| insert_into(c, last, value)).map(Some)
}

fn delete_at(root: Option<Value>, path: &[Value]) -> Res<Option<Value>> {
    let Some(root) = root else {
        return err("deleted node encountered during delete operation");
    };
    let Some((last, parent)) = path.split_last() else {
        return Ok(None);
    };
    modify(&root, parent, &mut |c| delete_from(c, last)).map(Some)
}

fn render_at(root: Option<&Value>, path: &[Value]) -> Res<Value> {
    let root = root.ok_or_else(|| {
        BuiltinError("nil value encountered where composite value was expected".into())
    })?;
    lookup_at(root, path).cloned()
}

pub(super) fn json_patch(args: &[Value], _: &Context) -> BuiltinResult {
    let source = arg(args, 1)?;
    let ops = match arg(args, 2)? {
        Value::Array(a) => a,
        other => return type_err(2, "array", other),
    };
    let mut root = Some(source.clone());
    for op in ops {
        let Value::Object(o) = op else {
            return err(
                "must be an array of JSON-Patch objects, but at least one element is not an object",
            );
        };
        let field = |name: &str| o.get(&Value::str(name));
        let path = field("path")
            .ok_or_else(|| BuiltinError("missing required attribute 'path'".into()))?;
        let op_name = match field("op") {
            None => return err("missing required attribute 'op'"),
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return err(format!(
                    "attribute 'op' must be a string but found: {}",
                    other.type_name()
                ))
            }
        };
        let path = parse_path(path)?;
        let value = || {
            field("value").ok_or_else(|| BuiltinError("missing required attribute 'value'".into()))
        };
        let from = || -> Res<Vec<Value>> {
            parse_path(
                field("from")
                    .ok_or_else(|| BuiltinError("missing required attribute 'from'".into()))?,
            )
        };
        root = match op_name {
            "add" => insert_at(root, &path, value()?)?,
            "remove" => delete_at(root, &path)?,
            "replace" => {
                let r = delete_at(root, &path)?;
                insert_at(r, &path, value()?)?
            }
            "move" => {
                let from = from()?;
                let chunk = render_at(root.as_ref(), &from)?;
                let r = delete_at(root, &from)?;
                insert_at(r, &path, &chunk)?
            }
            "copy" => {
                let from = from()?;
                let chunk = render_at(root.as_ref(), &from)?;
                insert_at(root, &path, &chunk)?
            }
            "test" => {
                let chunk = render_at(root.as_ref(), &path)?;
                let want = value()?;
                if &chunk != want {
                    return err(format!(
                        "value from EditTree != patch value.\n\nExpected: {want}\n\nFound: {chunk}"
                    ));
                }
                root
            }
            other => return err(format!("unrecognized op: '{other}'")),
        };
    }
    Ok(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::call;
    use super::*;

    fn v(s: &str) -> Value {
        Value::parse_rego(s).unwrap()
    }

    fn patch(doc: &str, ops: &str) -> BuiltinResult {
        call("json.patch", &[v(doc), v(ops)])
    }

    #[test]
    fn rfc6902_basics() {
        assert_eq!(
            patch(
                r#"{"a": {"b": [1, 2]}}"#,
                r#"[{"op": "add", "path": "/a/b/1", "value": 9}]"#
            ),
            Ok(Some(v(r#"{"a": {"b": [1, 9, 2]}}"#)))
        );
        assert_eq!(
            patch(
                r#"{"a": [1, 2]}"#,
                r#"[{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/a/0"}]"#
            ),
            Ok(Some(v(r#"{"a": [2, 3]}"#)))
        );
        assert_eq!(
            patch(
                r#"{"a": 1}"#,
                r#"[{"op": "move", "from": "/a", "path": "/b"}, {"op": "copy", "from": "/b", "path": "/c"}]"#
            ),
            Ok(Some(v(r#"{"b": 1, "c": 1}"#)))
        );
        assert_eq!(
            patch(
                r#"{"a": 1}"#,
                r#"[{"op": "replace", "path": "", "value": [1]}]"#
            ),
            Ok(Some(v("[1]")))
        );
        assert!(patch(
            r#"{"a": 1}"#,
            r#"[{"op": "test", "path": "/a", "value": 2}]"#
        )
        .is_err());
        assert!(patch(
            r#"{"a": [1]}"#,
            r#"[{"op": "add", "path": "/a/01", "value": 2}]"#
        )
        .is_err());
        assert!(patch(
            r#"{"a": [1]}"#,
            r#"[{"op": "add", "path": "/a/5", "value": 2}]"#
        )
        .is_err());
        assert!(patch(
            r#"{"a": 1}"#,
            r#"[{"op": "replace", "path": "/x", "value": 2}]"#
        )
        .is_err());
        assert!(patch(r#"{}"#, r#"[{"op": "frob", "path": "/x"}]"#).is_err());
    }

    #[test]
    fn paths_into_sets() {
        assert_eq!(
            patch(
                r#"{"a": {"x", "y"}}"#,
                r#"[{"op": "add", "path": "/a/z", "value": "z"}, {"op": "remove", "path": ["a", "x"]}]"#
            ),
            Ok(Some(v(r#"{"a": {"y", "z"}}"#)))
        );
        // Like OPA, a composite set member cannot be descended into.
        assert!(patch(
            r#"{"s": {{"k": 1}}}"#,
            r#"[{"op": "replace", "path": ["s", {"k": 1}, "k"], "value": 2}]"#
        )
        .is_err());
        assert!(patch(
            r#"{"a": {"x"}}"#,
            r#"[{"op": "add", "path": "/a/z", "value": "q"}]"#
        )
        .is_err());
    }
}
