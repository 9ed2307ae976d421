//! Python objects to input text and result JSON back to Python objects.
//!
//! Input is written straight to JSON text (Python sets as Rego sets, which the policy's parser
//! reads), so a request crosses the boundary once without an intermediate tree.

use std::fmt::Write as _;

use acgs_core::value::write_json_string;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

use crate::error::invalid_input;

/// Input nesting beyond this is refused instead of recursing further.
const MAX_DEPTH: usize = 256;

/// Serialises a Python value (dict, list, tuple, set, str, int, float, bool, None) as input text.
pub fn py_to_input(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = String::with_capacity(256);
    write_value(obj, &mut out, 0)?;
    Ok(out.into_bytes())
}

fn write_value(obj: &Bound<'_, PyAny>, out: &mut String, depth: usize) -> PyResult<()> {
    let py = obj.py();
    if depth > MAX_DEPTH {
        return Err(invalid_input(
            py,
            format!("input nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    if obj.is_none() {
        out.push_str("null");
    } else if let Ok(s) = obj.cast::<PyString>() {
        write_json_string(out, s.to_str()?);
    } else if let Ok(b) = obj.cast::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if let Ok(i) = obj.cast::<PyInt>() {
        match i.extract::<i64>() {
            Ok(v) => {
                let _ = write!(out, "{v}");
            }
            Err(_) => out.push_str(i.str()?.to_str()?),
        }
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        if !v.is_finite() {
            return Err(invalid_input(
                py,
                format!("input holds a non-finite number ({v})"),
            ));
        }
        out.push_str(&acgs_core::Number::Float(v).to_string());
    } else if let Ok(d) = obj.cast::<PyDict>() {
        out.push('{');
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let key = k.cast::<PyString>().map_err(|_| {
                invalid_input(
                    py,
                    format!("input object keys must be strings, not {}", type_name(&k)),
                )
            })?;
            write_json_string(out, key.to_str()?);
            out.push(':');
            write_value(&v, out, depth + 1)?;
        }
        out.push('}');
    } else if let Ok(l) = obj.cast::<PyList>() {
        write_seq(l.iter(), out, depth)?;
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        write_seq(t.iter(), out, depth)?;
    } else if let Ok(s) = obj.cast::<PySet>() {
        write_set(s.iter(), s.len(), out, depth)?;
    } else if let Ok(s) = obj.cast::<PyFrozenSet>() {
        write_set(s.iter(), s.len(), out, depth)?;
    } else {
        return Err(invalid_input(
            py,
            format!("input cannot hold a value of type {}", type_name(obj)),
        ));
    }
    Ok(())
}

fn write_seq<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut String,
    depth: usize,
) -> PyResult<()> {
    out.push('[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(&v, out, depth + 1)?;
    }
    out.push(']');
    Ok(())
}

fn write_set<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    out: &mut String,
    depth: usize,
) -> PyResult<()> {
    if len == 0 {
        out.push_str("set()");
        return Ok(());
    }
    out.push('{');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(&v, out, depth + 1)?;
    }
    out.push('}');
    Ok(())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Converts a JSON value to Python objects.
pub fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => py.None(),
        J::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .ok_or_else(|| PyValueError::new_err("number out of range"))?
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        J::String(s) => PyString::new(py, s).into_any().unbind(),
        J::Array(a) => {
            let items = a
                .iter()
                .map(|x| json_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        J::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}
