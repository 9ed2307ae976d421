//! Maps each core error to its own Python exception class, defined in `acgs.errors`.

use acgs_core::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(e: &Error) -> &'static str {
    match e {
        Error::Bundle(_) | Error::Abi(_) => "BundleError",
        Error::UnknownBuiltin(_) => "UnknownBuiltinError",
        Error::UnknownEntrypoint(_) => "UnknownEntrypointError",
        Error::InvalidInput(_) => "InvalidInputError",
        Error::ConstitutionalHashMismatch { .. } => "ConstitutionalHashMismatch",
        Error::Evaluation(_) => "EvaluationError",
        Error::Timeout(_) => "EvaluationTimeout",
        Error::MemoryLimit(_) => "ResourceLimitExceeded",
        Error::Internal(_) => "InternalError",
    }
}

/// Builds the Python exception for a core error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let module = match ERRORS.get_or_try_init(py, || py.import("acgs.errors").map(Bound::unbind)) {
        Ok(m) => m.bind(py),
        Err(err) => return err,
    };
    match module.getattr(class_name(&e)) {
        Ok(cls) => match cls.call1((e.to_string(), e.code())) {
            Ok(inst) => PyErr::from_value(inst),
            Err(err) => err,
        },
        Err(err) => err,
    }
}

/// An `InvalidInputError` with a message, for conversion failures on the Python side.
pub fn invalid_input(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py(py, Error::InvalidInput(msg.into()))
}
