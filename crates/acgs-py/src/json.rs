//! Exact JSON for the REST routes: the input documents of a request body, cut out and
//! re-written with every number as the client spelt it, so no route rounds a number to a
//! double on its way to the policy.

use acgs_core::canon::Json;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::invalid_input;

fn parse<'a>(py: Python<'_>, raw: &'a [u8]) -> PyResult<Json<'a>> {
    Json::parse(raw).map_err(|e| invalid_input(py, e.to_string()))
}

/// One JSON document (or its member ``member``, ``None`` when the document is not an object
/// or lacks it) as compact JSON bytes with sorted keys and every number as spelt. Raises
/// ``InvalidInputError`` for bytes that are not one JSON document, repeat a key in an object
/// or nest deeper than 128 levels.
#[pyfunction]
#[pyo3(signature = (raw, member=None))]
pub fn exact_json<'py>(
    py: Python<'py>,
    raw: &[u8],
    member: Option<&str>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let doc = parse(py, raw)?;
    let part = match member {
        None => Some(&doc),
        Some(key) => doc.get(key),
    };
    Ok(part.map(|p| PyBytes::new(py, &p.to_json_bytes())))
}

/// A batch's keys (for an object of inputs) and its inputs as exact JSON.
type BatchInputs<'py> = (Option<Vec<String>>, Vec<Bound<'py, PyBytes>>);

/// The inputs of a batch body (``{"inputs": [...] | {...}, "common_input": {...}}``) as exact
/// JSON bytes, each with ``common_input`` merged under it (objects merge key by key, the
/// input's own values win). Returns the keys (``None`` for an array of inputs; sorted for an
/// object) and the inputs in the same order. Raises ``InvalidInputError`` as ``exact_json``
/// does, or when the body does not have that shape.
#[pyfunction]
pub fn exact_batch_inputs<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<BatchInputs<'py>> {
    let doc = parse(py, raw)?;
    let common = match doc.get("common_input") {
        None | Some(Json::Null) => None,
        Some(c @ Json::Obj(_)) => Some(c),
        Some(_) => return Err(invalid_input(py, "\"common_input\" must be an object")),
    };
    let write = |v: &Json<'_>| -> Bound<'py, PyBytes> {
        let bytes = match common {
            Some(c) => Json::merged(c, v).to_json_bytes(),
            None => v.to_json_bytes(),
        };
        PyBytes::new(py, &bytes)
    };
    match doc.get("inputs") {
        Some(Json::Arr(items)) => Ok((None, items.iter().map(write).collect())),
        Some(Json::Obj(members)) => Ok((
            Some(members.iter().map(|(k, _)| k.to_string()).collect()),
            members.iter().map(|(_, v)| write(v)).collect(),
        )),
        _ => Err(invalid_input(
            py,
            "\"inputs\" must be an object or an array",
        )),
    }
}
