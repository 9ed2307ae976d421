//! `admit_input`: the core's admission step (`acgs_core::trusted::admit`) for inputs the Python
//! services evaluate outside `decide` (other entrypoints, batches, sandbox and evolution).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::to_py;

/// ``admit_input(raw, trusted=None)``: the JSON input ``raw`` with its ``trusted`` member
/// replaced by ``trusted`` (the service's facts, a JSON object as bytes) or dropped, and a
/// non-ASCII ``action`` in NFKC form. Numbers keep their literal text. Raises
/// ``InvalidInputError`` for JSON it cannot read when a rewrite may be needed.
#[pyfunction]
#[pyo3(signature = (raw, trusted=None))]
pub fn admit_input<'py>(
    py: Python<'py>,
    raw: &[u8],
    trusted: Option<&[u8]>,
) -> PyResult<Bound<'py, PyBytes>> {
    match acgs_core::trusted::admit(raw, trusted) {
        Ok(out) => Ok(PyBytes::new(py, &out)),
        Err(e) => Err(to_py(py, e)),
    }
}
