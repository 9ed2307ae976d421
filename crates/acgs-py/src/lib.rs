//! Python bindings: the module `acgs._acgs`. Type conversion and error mapping only; the work
//! happens in acgs-core with the GIL released.

mod audit;
mod convert;
mod error;
mod json;
mod trusted;

use std::borrow::Cow;
use std::sync::Arc;

use acgs_core::engine::Evaluator;
use acgs_core::{Bundle, Engine as Core, EngineOptions, Format, InputCheck, Limits};
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

/// The bytes of a raw JSON input: `bytes` and `str` borrowed (both immutable), `bytearray`
/// copied; `None` for no input.
fn input_bytes<'a>(
    py: Python<'_>,
    raw: Option<&'a Bound<'_, PyAny>>,
) -> PyResult<Option<Cow<'a, [u8]>>> {
    match raw {
        None => Ok(None),
        Some(r) if r.is_none() => Ok(None),
        Some(r) => {
            if let Ok(b) = r.cast::<PyBytes>() {
                Ok(Some(Cow::Borrowed(b.as_bytes())))
            } else if let Ok(s) = r.cast::<pyo3::types::PyString>() {
                Ok(Some(Cow::Borrowed(s.to_str()?.as_bytes())))
            } else if let Ok(b) = r.cast::<PyByteArray>() {
                Ok(Some(Cow::Owned(b.to_vec())))
            } else {
                Err(invalid_input(
                    py,
                    "raw input must be bytes or str holding JSON",
                ))
            }
        }
    }
}

/// Threads for a parallel call: as asked, else one per core.
fn threads_or_cores(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// Python's fastest JSON parser at hand: orjson when installed (a dependency of the services),
/// else the standard library's C parser. Either beats building objects from serde values.
static LOADS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

fn loads<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let f = LOADS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        let m = py.import("orjson").or_else(|_| py.import("json"))?;
        Ok(m.getattr("loads")?.unbind())
    })?;
    f.bind(py).call1((PyBytes::new(py, bytes),))
}

/// Extracts `result` from a JSON result set; `None` when undefined.
fn result_of(py: Python<'_>, set: &[u8]) -> PyResult<Py<PyAny>> {
    if set == b"[]" {
        return Ok(py.None());
    }
    // OPA writes `[{"result":X}]`; parse only X.
    if let Some(value) = set
        .strip_prefix(b"[{\"result\":")
        .and_then(|r| r.strip_suffix(b"}]"))
    {
        if let Ok(v) = loads(py, value) {
            return Ok(v.unbind());
        }
    }
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

/// A JSON object from the core (a decision body) as a Python dict.
fn body_to_py(py: Python<'_>, body: &[u8]) -> PyResult<Py<PyAny>> {
    if let Ok(v) = loads(py, body) {
        return Ok(v.unbind());
    }
    // orjson refuses integers beyond 64 bits, which policies may produce.
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        to_py(
            py,
            acgs_core::Error::Internal(format!("malformed decision body: {e}")),
        )
    })?;
    json_to_py(py, &v)
}

/// A loaded policy bundle, ready to evaluate. Thread-safe; share one per process.
#[pyclass(module = "acgs._acgs", frozen)]
pub struct Engine {
    inner: Arc<Core>,
}

/// One of the core's decision calls (full, or from the cache and fast path only).
type Decide<T> = fn(&Core, &[u8], Option<&[u8]>) -> acgs_core::Result<T>;

/// The argument handling the methods share: each runs one core call with the GIL released
/// and maps its error.
impl Engine {
    /// One evaluation; `probed`: the caller's cache-only probe already counted this input's
    /// L1 look-up.
    fn run(
        &self,
        py: Python<'_>,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
        check: InputCheck,
        format: Format,
        probed: bool,
    ) -> PyResult<Vec<u8>> {
        let inner = &self.inner;
        py.detach(|| {
            if probed {
                inner.evaluate_probed(entrypoint, input, check, format)
            } else {
                inner.evaluate(entrypoint, input, check, format)
            }
        })
        .map_err(|e| to_py(py, e))
    }

    fn run_many(
        &self,
        py: Python<'_>,
        entrypoint: Option<&str>,
        raws: &[Vec<u8>],
        check: InputCheck,
        threads: Option<usize>,
    ) -> PyResult<Vec<acgs_core::Result<Vec<u8>>>> {
        let threads = threads_or_cores(threads);
        let inner = &self.inner;
        py.detach(|| inner.evaluate_many(entrypoint, raws, check, Format::Json, threads))
            .map_err(|e| to_py(py, e))
    }

    /// `decide` is `Core::decide_trusted` or `Core::decide_cached_trusted`.
    fn decision<T: Send>(
        &self,
        py: Python<'_>,
        raw: &[u8],
        trusted: Option<&[u8]>,
        decide: Decide<T>,
    ) -> PyResult<T> {
        let inner = &*self.inner;
        py.detach(|| decide(inner, raw, trusted))
            .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl Engine {
    /// Loads a bundle from a path (``.tar.gz``, a directory, or a ``.wasm`` file) or bytes.
    ///
    /// ``cache_size`` is the L1 decision cache's capacity (0 turns it off); ``cache_ttl`` how
    /// long an entry lives, in seconds (``None``: until evicted); ``fast_path`` serves
    /// constitution decisions the constitution's data marks as decidable without evaluation;
    /// ``native`` evaluates the shipped constitution's decisions in Rust rather than in its Wasm
    /// (only for a bundle with exactly those rules; see ``Engine.native``). ``evaluator`` picks
    /// what runs the remaining evaluations: ``"wasm"`` (the bundle's Wasm), ``"plan"`` (its
    /// ``/plan.json`` evaluated natively; a bundle without a usable plan is refused) or
    /// ``"auto"`` (the plan when usable, else the Wasm; ``Engine.plan`` says why not).
    #[staticmethod]
    #[pyo3(signature = (source, *, timeout_ms=None, memory_limit=None, max_idle=None,
                        cache_size=10_000, cache_ttl=Some(300.0), fast_path=true, native=true,
                        evaluator="auto"),
           text_signature = "(source, *, timeout_ms=None, memory_limit=None, max_idle=None, \
                             cache_size=10000, cache_ttl=300.0, fast_path=True, native=True, \
                             evaluator='auto')")]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn load(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        timeout_ms: Option<u64>,
        memory_limit: Option<u64>,
        max_idle: Option<usize>,
        cache_size: usize,
        cache_ttl: Option<f64>,
        fast_path: bool,
        native: bool,
        evaluator: &str,
    ) -> PyResult<Engine> {
        let evaluator: Evaluator = evaluator.parse().map_err(|e| to_py(py, e))?;
        let cache_ttl = match cache_ttl {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 => Some(std::time::Duration::from_secs_f64(t)),
            Some(_) => {
                return Err(invalid_input(
                    py,
                    "cache_ttl must be a positive number of seconds or None",
                ))
            }
        };
        let bundle = read_bundle(py, source)?;
        let defaults = EngineOptions::default();
        let options = EngineOptions {
            limits: Limits {
                timeout_ms: timeout_ms.unwrap_or(defaults.limits.timeout_ms),
                memory_bytes: memory_limit.unwrap_or(defaults.limits.memory_bytes),
            },
            max_idle: max_idle.unwrap_or(defaults.max_idle),
            cache_capacity: cache_size,
            cache_ttl,
            fast_path,
            native,
            evaluator,
        };
        let engine = py
            .detach(|| Core::new(bundle, options))
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
        let set = self.run(
            py,
            entrypoint,
            raw.as_deref(),
            InputCheck::Trusted,
            Format::Json,
            false,
        )?;
        result_of(py, &set)
    }

    /// Evaluates raw JSON and returns OPA's result set as JSON bytes:
    /// ``[{"result": ...}]``, or ``[]`` when the entrypoint is undefined. ``probed=True`` after
    /// ``evaluate_cached_json`` returned ``None`` for the same input: that probe counted the
    /// L1 look-up (``cache_stats``), so this call's is not counted again.
    #[pyo3(signature = (raw=None, entrypoint=None, *, probed=false))]
    fn evaluate_json<'py>(
        &self,
        py: Python<'py>,
        raw: Option<&Bound<'py, PyAny>>,
        entrypoint: Option<&str>,
        probed: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = input_bytes(py, raw)?;
        let set = self.run(
            py,
            entrypoint,
            input.as_deref(),
            InputCheck::Validate,
            Format::Json,
            probed,
        )?;
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
        let set = self.run(
            py,
            entrypoint,
            input.as_deref(),
            InputCheck::Validate,
            Format::Rego,
            false,
        )?;
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
        let sets = self.run_many(py, entrypoint, &raws, InputCheck::Trusted, threads)?;
        sets.into_iter()
            .map(|r| {
                r.map_err(|e| to_py(py, e))
                    .and_then(|set| result_of(py, &set))
            })
            .collect()
    }

    /// Evaluates each raw JSON input (bytes) in parallel in Rust, like ``evaluate_many``, and
    /// returns, in input order, each result set as JSON bytes (as ``evaluate_json`` gives it)
    /// or the ``AcgsError`` that input raised: one bad input fails only itself. Numbers reach
    /// the policy exactly as spelt in the bytes.
    #[pyo3(signature = (raws, entrypoint=None, threads=None))]
    fn evaluate_many_json(
        &self,
        py: Python<'_>,
        raws: &Bound<'_, PyAny>,
        entrypoint: Option<&str>,
        threads: Option<usize>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let raws = raws
            .try_iter()?
            .map(|item| {
                let item = item?;
                input_bytes(py, Some(&item))?
                    .map(Cow::into_owned)
                    .ok_or_else(|| invalid_input(py, "each raw input must be bytes or str"))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let sets = self.run_many(py, entrypoint, &raws, InputCheck::Validate, threads)?;
        Ok(sets
            .into_iter()
            .map(|r| match r {
                Ok(set) => PyBytes::new(py, &set).into_any().unbind(),
                Err(e) => to_py(py, e).into_value(py).into_any(),
            })
            .collect())
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

    /// Decides a constitution request (a dict): the decision of ``acgs/main/decision`` with
    /// ``decision_id``, ``bundle_digest``, ``cache_hit``, ``fast_path`` and
    /// ``evaluation_time_ms`` added. Faults in the policy path give a deny naming the fault;
    /// a request naming another constitutional hash raises ``ConstitutionalHashMismatch``.
    /// The request's own ``trusted`` member is dropped; ``trusted`` (JSON bytes of an object:
    /// the caller's facts) takes its place when given.
    #[pyo3(signature = (request, trusted=None))]
    fn decide(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        trusted: Option<&[u8]>,
    ) -> PyResult<Py<PyAny>> {
        let raw = py_to_input(request)?;
        let d = self.decision(py, &raw, trusted, Core::decide_trusted)?;
        body_to_py(py, &d.body)
    }

    /// ``decide`` on raw JSON bytes; returns the response object as JSON bytes.
    /// ``probed=True`` after ``decide_cached_json`` returned ``None`` for the same request: that
    /// probe counted the L1 look-up, so this call's is not counted again.
    #[pyo3(signature = (raw, trusted=None, *, probed=false))]
    fn decide_json<'py>(
        &self,
        py: Python<'py>,
        raw: &Bound<'py, PyAny>,
        trusted: Option<&[u8]>,
        probed: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = input_bytes(py, Some(raw))?.unwrap_or_default();
        let decide: Decide<_> = if probed {
            Core::decide_probed
        } else {
            Core::decide_trusted
        };
        let d = self.decision(py, &input, trusted, decide)?;
        Ok(PyBytes::new(py, &d.body))
    }

    /// Answers from the L1 cache or the fast path only; ``None`` when a full evaluation is
    /// needed (so a caller can consult a second-level cache first). Each call counts its L1
    /// look-up in ``cache_stats``, except with ``probed=True``: a request read again after a
    /// second-level cache refilled L1 (``cache_put``) was counted by its first probe.
    #[pyo3(signature = (raw, trusted=None, *, probed=false))]
    fn decide_cached_json<'py>(
        &self,
        py: Python<'py>,
        raw: &Bound<'py, PyAny>,
        trusted: Option<&[u8]>,
        probed: bool,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let input = input_bytes(py, Some(raw))?.unwrap_or_default();
        let decide: Decide<_> = if probed {
            Core::decide_cached_probed
        } else {
            Core::decide_cached_trusted
        };
        let d = self.decision(py, &input, trusted, decide)?;
        Ok(d.map(|d| PyBytes::new(py, &d.body)))
    }

    /// ``decide`` for many requests, in parallel in Rust; results keep the order. A request
    /// that is itself bad raises.
    #[pyo3(signature = (requests, threads=None))]
    fn decide_many(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let raws = requests
            .try_iter()?
            .map(|item| py_to_input(&item?))
            .collect::<PyResult<Vec<_>>>()?;
        let threads = threads_or_cores(threads);
        let inner = &self.inner;
        let out = py
            .detach(|| inner.decide_many(&raws, threads))
            .map_err(|e| to_py(py, e))?;
        out.into_iter()
            .map(|r| {
                r.map_err(|e| to_py(py, e))
                    .and_then(|d| body_to_py(py, &d.body))
            })
            .collect()
    }

    /// The L1 cache key (16 bytes) of an evaluation with JSON output: xxh3-128 over the bundle
    /// digest, the entrypoint and the canonical input. For second-level caches.
    #[pyo3(signature = (raw=None, entrypoint=None))]
    fn cache_key<'py>(
        &self,
        py: Python<'py>,
        raw: Option<&Bound<'py, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let input = input_bytes(py, raw)?;
        let key = self
            .inner
            .cache_key(entrypoint, input.as_deref())
            .map_err(|e| to_py(py, e))?;
        Ok(PyBytes::new(py, &key.to_bytes()))
    }

    /// ``evaluate_json`` answered from the L1 cache or the fast path only; ``None`` when a full
    /// evaluation is needed (so a caller can consult a second-level cache first).
    #[pyo3(signature = (raw=None, entrypoint=None))]
    fn evaluate_cached_json<'py>(
        &self,
        py: Python<'py>,
        raw: Option<&Bound<'py, PyAny>>,
        entrypoint: Option<&str>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let input = input_bytes(py, raw)?;
        let set = self
            .inner
            .evaluate_cached(entrypoint, input.as_deref())
            .map_err(|e| to_py(py, e))?;
        Ok(set.map(|s| PyBytes::new(py, &s)))
    }

    /// Whether results of this bundle may be cached: its module imports no non-deterministic
    /// builtin (time, random, uuid, http).
    #[getter]
    fn cacheable(&self) -> bool {
        self.inner.loaded().cacheable
    }

    /// Stores a result set (``evaluate_json``'s output) under a key from ``cache_key``.
    fn cache_put(&self, py: Python<'_>, key: &[u8], result_set: &[u8]) -> PyResult<()> {
        let key: [u8; 16] = key
            .try_into()
            .map_err(|_| invalid_input(py, "a cache key is 16 bytes"))?;
        self.inner
            .cache_put(acgs_core::cache::CacheKey::from_bytes(key), result_set);
        Ok(())
    }

    /// L1 cache and pipeline counters: hits, misses, evictions, expirations, size, capacity,
    /// fast_path, native (decisions the native evaluator made).
    fn cache_stats(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let s = self.inner.stats();
        std::collections::BTreeMap::from([
            ("hits", s.cache.hits),
            ("misses", s.cache.misses),
            ("evictions", s.cache.evictions),
            ("expirations", s.cache.expirations),
            ("size", s.cache.size),
            ("capacity", s.cache.capacity),
            ("fast_path", s.fast_path),
            ("native", s.native),
        ])
    }

    /// The loaded constitution's declared hash, or ``None`` for a bundle that declares none.
    #[getter]
    fn constitutional_hash(&self) -> Option<String> {
        self.inner.loaded().constitutional_hash.clone()
    }

    /// What the fast path serves: ``{"deny_actions", "allow_actions", "skipped", "error"}``,
    /// or ``None`` when the bundle declares no fast path.
    #[getter]
    fn fast_path(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let loaded = self.inner.loaded();
        let info = match (&loaded.fast_path, &loaded.fast_path_error) {
            (Some(fp), _) => serde_json::json!({
                "deny_actions": fp.deny_actions(),
                "allow_actions": fp.allow_actions(),
                "skipped": fp.skipped.iter()
                    .map(|s| serde_json::json!({"action": s.action, "reason": s.reason}))
                    .collect::<Vec<_>>(),
                "error": null,
            }),
            (None, Some(err)) => serde_json::json!({
                "deny_actions": 0, "allow_actions": 0, "skipped": [], "error": err,
            }),
            (None, None) => return Ok(py.None()),
        };
        json_to_py(py, &info)
    }

    /// Whether decisions are evaluated natively: ``{"enabled": bool, "error": str | None}``
    /// (``error`` says why not), or ``None`` for a bundle that is no constitution or when the
    /// engine was loaded with ``native=False``.
    #[getter]
    fn native(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let loaded = self.inner.loaded();
        let info = match (&loaded.native, &loaded.native_error) {
            (Some(_), _) => serde_json::json!({"enabled": true, "error": null}),
            (None, Some(err)) => serde_json::json!({"enabled": false, "error": err}),
            (None, None) => return Ok(py.None()),
        };
        json_to_py(py, &info)
    }

    /// Which evaluator runs full evaluations: ``"plan"`` or ``"wasm"``.
    #[getter]
    fn evaluator(&self) -> &'static str {
        self.inner.loaded().evaluator().as_str()
    }

    /// Whether the bundle's plan evaluates: ``{"enabled": bool, "error": str | None,
    /// "rewrites": {"steps": int, "complete": bool} | None}`` (``error`` says why not, under
    /// ``evaluator="auto"``; ``rewrites``: the load-time rewrites' work, and whether their
    /// budget let them finish), or ``None`` when the engine was loaded with ``evaluator="wasm"``.
    #[getter]
    fn plan(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let loaded = self.inner.loaded();
        let info = match (loaded.evaluator(), &loaded.plan_error) {
            (Evaluator::Plan, _) => {
                let rewrites = loaded
                    .plan_rewrites()
                    .map(|(steps, cut)| serde_json::json!({"steps": steps, "complete": !cut}));
                serde_json::json!({"enabled": true, "error": null, "rewrites": rewrites})
            }
            (_, Some(err)) => {
                serde_json::json!({"enabled": false, "error": err, "rewrites": null})
            }
            _ => return Ok(py.None()),
        };
        json_to_py(py, &info)
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

    /// The builtins the policy calls that are in ``NONDETERMINISTIC_BUILTINS`` (sorted): when
    /// any, no decision of this bundle is cached (``cacheable`` is false).
    #[getter]
    fn nondeterministic_builtins(&self) -> Vec<String> {
        let loaded = self.inner.loaded();
        acgs_core::nondeterministic::nondeterministic_in(loaded.policy().builtin_names())
            .into_iter()
            .map(str::to_owned)
            .collect()
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

    #[pymodule_export]
    use super::audit::{
        canonical_json, canonicalize_json, consistency_proof, event_hashes, generate_signing_key,
        inclusion_proof, leaf_hash, merkle_root, sign_checkpoint, verify_chain, verify_checkpoint,
        verify_consistency, verify_inclusion, ChainReport, PyCheckpointer, PyCompactRange,
    };

    #[pymodule_export]
    use super::json::{exact_batch_inputs, exact_json};

    #[pymodule_export]
    use super::trusted::admit_input;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // The core's one list of builtins whose results are never cached.
        let names = acgs_core::nondeterministic::NONDETERMINISTIC_BUILTINS.map(|(name, _)| name);
        m.add(
            "NONDETERMINISTIC_BUILTINS",
            pyo3::types::PyFrozenSet::new(m.py(), names)?,
        )
    }
}
