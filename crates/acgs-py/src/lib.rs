//! Python bindings: the module `acgs._acgs`. Type conversion and error mapping only; the work
//! happens in acgs-core with the GIL released.

mod convert;
mod error;

use std::sync::Arc;

use acgs_core::{Bundle, EngineOptions, Format, InputCheck, Limits};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use crate::convert::{json_to_py, py_to_input};
use crate::error::{invalid_input, to_py};

/// Reads a bundle from a path (str or os.PathLike) or from bytes, with the GIL released.
fn read_bundle(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Bundle> {
    if let Ok(b) = source.cast::<PyBytes>() {
        let bytes = b.as_bytes().to_vec();
        return py
            .detach(|| Bundle::from_bytes(&bytes))
            .map_err(|e| to_py(py, e));
    }
    if source.cast::<PyByteArray>().is_ok() || source.cast::<PyMemoryView>().is_ok() {
        let bytes: Vec<u8> = source
            .call_method0("__bytes__")
            .or_else(|_| py.import("builtins")?.getattr("bytes")?.call1((source,)))?
            .extract()?;
        return py
            .detach(|| Bundle::from_bytes(&bytes))
            .map_err(|e| to_py(py, e));
    }
    let path: std::path::PathBuf = py
        .import("os")?
        .getattr("fspath")?
        .call1((source,))
        .map_err(|_| invalid_input(py, "bundle source must be a path or bytes"))?
        .extract()?;
    py.detach(|| Bundle::from_path(&path))
        .map_err(|e| to_py(py, e))
}

fn input_bytes(py: Python<'_>, raw: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    match raw {
        None => Ok(None),
        Some(r) if r.is_none() => Ok(None),
        Some(r) => {
            if let Ok(b) = r.cast::<PyBytes>() {
                Ok(Some(b.as_bytes().to_vec()))
            } else if let Ok(s) = r.cast::<pyo3::types::PyString>() {
                Ok(Some(s.to_str()?.as_bytes().to_vec()))
            } else if let Ok(b) = r.cast::<PyByteArray>() {
                Ok(Some(b.to_vec()))
            } else {
                Err(invalid_input(
                    py,
                    "raw input must be bytes or str holding JSON",
                ))
            }
        }
    }
}

/// Extracts `result` from a JSON result set; `None` when undefined.
fn result_of(py: Python<'_>, set: &[u8]) -> PyResult<Py<PyAny>> {
    let parsed: serde_json::Value = serde_json::from_slice(set).map_err(|e| {
        to_py(
            py,
            acgs_core::Error::Internal(format!("malformed result set: {e}")),
        )
    })?;
    match parsed.get(0).and_then(|row| row.get("result")) {
        Some(v) => json_to_py(py, v),
        None => Ok(py.None()),
    }
}

/// A loaded policy bundle, ready to evaluate. Thread-safe; share one per process.
#[pyclass(module = "acgs._acgs", frozen)]
pub struct Engine {
    inner: Arc<acgs_core::Engine>,
}

#[pymethods]
impl Engine {
    /// Loads a bundle from a path (``.tar.gz``, a directory, or a ``.wasm`` file) or bytes.
    #[staticmethod]
    #[pyo3(signature = (source, *, timeout_ms=None, memory_limit=None, max_idle=None))]
    fn load(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        timeout_ms: Option<u64>,
        memory_limit: Option<u64>,
        max_idle: Option<usize>,
    ) -> PyResult<Engine> {
        let bundle = read_bundle(py, source)?;
        let defaults = EngineOptions::default();
        let options = EngineOptions {
            limits: Limits {
                timeout_ms: timeout_ms.unwrap_or(defaults.limits.timeout_ms),
                memory_bytes: memory_limit.unwrap_or(defaults.limits.memory_bytes),
            },
            max_idle: max_idle.unwrap_or(defaults.max_idle),
        };
        let engine = py
            .detach(|| acgs_core::Engine::new(bundle, options))
            .map_err(|e| to_py(py, e))?;
        Ok(Engine {
            inner: Arc::new(engine),
        })
    }

    /// Swaps in another bundle; evaluations in flight finish on the old one.
    fn reload(&self, py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<()> {
        let bundle = read_bundle(py, source)?;
        let inner = self.inner.clone();
        py.detach(|| inner.reload(bundle)).map_err(|e| to_py(py, e))
    }

    /// Evaluates `input` and returns the entrypoint's value, or ``None`` when undefined.
    #[pyo3(signature = (input=None, entrypoint=None))]
    fn evaluate(
        &self,
        py: Python<'_>,
        input: Option<&Bound<'_, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let raw = match input {
            Some(i) if !i.is_none() => Some(py_to_input(i)?),
            _ => None,
        };
        let inner = &self.inner;
        let set = py
            .detach(|| {
                inner.evaluate(
                    entrypoint,
                    raw.as_deref(),
                    InputCheck::Trusted,
                    Format::Json,
                )
            })
            .map_err(|e| to_py(py, e))?;
        result_of(py, &set)
    }

    /// Evaluates raw JSON and returns OPA's result set as JSON bytes:
    /// ``[{"result": ...}]``, or ``[]`` when the entrypoint is undefined.
    #[pyo3(signature = (raw=None, entrypoint=None))]
    fn evaluate_json<'py>(
        &self,
        py: Python<'py>,
        raw: Option<&Bound<'py, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = input_bytes(py, raw)?;
        let inner = &self.inner;
        let set = py
            .detach(|| {
                inner.evaluate(
                    entrypoint,
                    input.as_deref(),
                    InputCheck::Validate,
                    Format::Json,
                )
            })
            .map_err(|e| to_py(py, e))?;
        Ok(PyBytes::new(py, &set))
    }

    /// Like ``evaluate_json`` but returns the result set in Rego value syntax, sets kept.
    #[pyo3(signature = (raw=None, entrypoint=None))]
    fn evaluate_rego(
        &self,
        py: Python<'_>,
        raw: Option<&Bound<'_, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<String> {
        let input = input_bytes(py, raw)?;
        let inner = &self.inner;
        let set = py
            .detach(|| {
                inner.evaluate(
                    entrypoint,
                    input.as_deref(),
                    InputCheck::Validate,
                    Format::Rego,
                )
            })
            .map_err(|e| to_py(py, e))?;
        Ok(String::from_utf8_lossy(&set).into_owned())
    }

    /// Evaluates each input, in parallel in Rust on ``threads`` threads (default: all cores).
    /// Returns the values in input order; the first failure raises.
    #[pyo3(signature = (inputs, entrypoint=None, threads=None))]
    fn evaluate_many(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        entrypoint: Option<&str>,
        threads: Option<usize>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let raws = inputs
            .try_iter()?
            .map(|item| py_to_input(&item?))
            .collect::<PyResult<Vec<_>>>()?;
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let inner = &self.inner;
        let sets = py
            .detach(|| {
                inner.evaluate_many(
                    entrypoint,
                    &raws,
                    InputCheck::Trusted,
                    Format::Json,
                    threads,
                )
            })
            .map_err(|e| to_py(py, e))?;
        sets.into_iter()
            .map(|r| {
                r.map_err(|e| to_py(py, e))
                    .and_then(|set| result_of(py, &set))
            })
            .collect()
    }

    /// ``await engine.evaluate_async(input)``: runs ``evaluate`` on the event loop's default
    /// executor; the GIL is released while Rust evaluates, so calls overlap.
    #[pyo3(signature = (input=None, entrypoint=None))]
    fn evaluate_async<'py>(
        slf: &Bound<'py, Self>,
        input: Option<&Bound<'py, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let call = py.import("functools")?.getattr("partial")?.call1((
            slf.getattr("evaluate")?,
            input.map_or_else(|| py.None(), |i| i.clone().unbind()),
            entrypoint,
        ))?;
        event_loop.call_method1("run_in_executor", (py.None(), call))
    }

    /// Entrypoint names, e.g. ``["acgs/main/decision"]``, ordered by id.
    #[getter]
    fn entrypoints(&self) -> Vec<String> {
        let loaded = self.inner.loaded();
        let mut eps: Vec<(&String, &i32)> = loaded.policy().entrypoints().iter().collect();
        eps.sort_by_key(|(_, id)| **id);
        eps.into_iter().map(|(n, _)| n.clone()).collect()
    }

    /// SHA-256 of the bundle's content, hex.
    #[getter]
    fn bundle_digest(&self) -> String {
        self.inner.loaded().bundle_digest.clone()
    }

    /// The bundle manifest's revision string.
    #[getter]
    fn revision(&self) -> String {
        self.inner.loaded().revision.clone()
    }

    /// Host builtins the policy calls.
    #[getter]
    fn builtins(&self) -> Vec<String> {
        self.inner.loaded().policy().builtin_names().to_vec()
    }

    /// The module's OPA Wasm ABI version, e.g. ``"1.3"``.
    #[getter]
    fn abi_version(&self) -> String {
        format!("1.{}", self.inner.loaded().policy().abi_minor())
    }

    /// The bundle's data document.
    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &self.inner.loaded().data)
    }

    fn __repr__(&self) -> String {
        let loaded = self.inner.loaded();
        let digest = loaded.bundle_digest.get(..12).unwrap_or_default();
        format!(
            "<acgs.Engine bundle={digest} entrypoints={}>",
            loaded.policy().entrypoints().len()
        )
    }
}

#[pymodule]
mod _acgs {
    #[pymodule_export]
    use super::Engine;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
