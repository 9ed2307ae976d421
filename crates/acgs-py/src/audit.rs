//! Python surface of the audit core (acgs-audit): canonical JSON, chain hashes and their
//! verifier, Merkle proofs and signed checkpoints. Conversion and error mapping only.

use std::sync::Mutex;

use acgs_audit::chain::{self, StoredEvent};
use acgs_audit::checkpoint::{self, SigningKey, VerifierKey};
use acgs_audit::{jcs, merkle, Error, Hash};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::error::audit_to_py;

fn err(py: Python<'_>, e: Error) -> PyErr {
    audit_to_py(py, e)
}

fn hash_arg(py: Python<'_>, bytes: &[u8]) -> PyResult<Hash> {
    chain::hash_from_slice(bytes).map_err(|e| err(py, e))
}

fn hashes_arg(py: Python<'_>, items: &[Bound<'_, PyBytes>]) -> PyResult<Vec<Hash>> {
    items.iter().map(|h| hash_arg(py, h.as_bytes())).collect()
}

fn bytes_list<'py>(py: Python<'py>, hashes: &[Hash]) -> Vec<Bound<'py, PyBytes>> {
    hashes.iter().map(|h| PyBytes::new(py, h)).collect()
}

// ---- canonical JSON -------------------------------------------------------------------------

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn invalid_value(why: String) -> Error {
    Error::InvalidValue(why)
}

fn py_str(py: Python<'_>, s: &Bound<'_, PyString>) -> PyResult<String> {
    s.to_str().map(str::to_owned).map_err(|_| {
        err(
            py,
            Error::InvalidString("string holds a lone surrogate".into()),
        )
    })
}

/// A Python value as a JSON value, refusing what JSON cannot hold.
fn py_to_value(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    let py = obj.py();
    if depth > jcs::MAX_DEPTH {
        return Err(err(
            py,
            invalid_value(format!("nested deeper than {} levels", jcs::MAX_DEPTH)),
        ));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(py_str(py, s)?));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::Number(Number::from(v)));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Value::Number(Number::from(v)));
        }
        // Beyond 64 bits: allowed only where JCS keeps every digit (see jcs::number).
        let text = i.str()?.to_str()?.to_owned();
        let x = jcs::integer_value(&text).map_err(|e| err(py, e))?;
        return Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| err(py, Error::NumberOutOfRange(text)));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        return Number::from_f64(x).map(Value::Number).ok_or_else(|| {
            err(
                py,
                Error::NumberOutOfRange(format!("{x} has no JSON representation")),
            )
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = k.cast::<PyString>().map_err(|_| {
                err(
                    py,
                    invalid_value(format!("object keys must be str, not {}", type_name(&k))),
                )
            })?;
            map.insert(py_str(py, key)?, py_to_value(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l
            .iter()
            .map(|v| py_to_value(&v, depth + 1))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t
            .iter()
            .map(|v| py_to_value(&v, depth + 1))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    Err(err(
        py,
        invalid_value(format!(
            "JSON cannot hold a value of type {}",
            type_name(obj)
        )),
    ))
}

/// The RFC 8785 canonical JSON bytes of a Python value (dict with str keys, list, tuple, str,
/// int, float, bool, None).
#[pyfunction]
pub fn canonical_json<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = obj.py();
    let value = py_to_value(obj, 0)?;
    let bytes = jcs::canonicalize_value(&value).map_err(|e| err(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Parses JSON text strictly (duplicate keys and lone surrogates refused) and returns its
/// RFC 8785 canonical bytes.
#[pyfunction]
pub fn canonicalize_json<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = py
        .detach(|| jcs::canonicalize(raw))
        .map_err(|e| err(py, e))?;
    Ok(PyBytes::new(py, &bytes))
}

// ---- chain ----------------------------------------------------------------------------------

/// ``(content_hash, chain_hash)`` of a canonical event that follows ``prev_chain``.
#[pyfunction]
pub fn event_hashes<'py>(
    py: Python<'py>,
    prev_chain: &[u8],
    canonical: &[u8],
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let prev = hash_arg(py, prev_chain)?;
    let (content, chain) = chain::event_hashes(&prev, canonical).map_err(|e| err(py, e))?;
    Ok((PyBytes::new(py, &content), PyBytes::new(py, &chain)))
}

/// The outcome of ``verify_chain``.
#[pyclass(module = "acgs._acgs", frozen, get_all)]
pub struct ChainReport {
    /// True when every event verified.
    ok: bool,
    /// Events that verified before the first bad one (all of them when ``ok``).
    checked: u64,
    /// The index of the first bad event, or None.
    first_bad_index: Option<u64>,
    /// A stable code for why it is bad: ``not_json``, ``not_canonical``, ``content_mismatch``,
    /// ``chain_mismatch``, ``index_gap`` or ``malformed_hash``; None when ``ok``.
    reason: Option<String>,
    /// A human-readable explanation, or None.
    detail: Option<String>,
    /// The chain hash after the last event that verified.
    last_chain_hash: Py<PyBytes>,
}

#[pymethods]
impl ChainReport {
    fn __repr__(&self) -> String {
        match (&self.first_bad_index, &self.reason) {
            (Some(i), Some(r)) => format!(
                "<ChainReport ok=False checked={} first_bad_index={i} reason={r:?}>",
                self.checked
            ),
            _ => format!("<ChainReport ok=True checked={}>", self.checked),
        }
    }
}

/// Re-canonicalises and re-hashes every payload of a contiguous range of stored events (never
/// trusting a stored hash) and reports the first bad one. ``indices``, when given, are the
/// stored event indices, checked for gaps. Runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (prev_chain, payloads, content_hashes, chain_hashes, first_index, indices=None))]
pub fn verify_chain(
    py: Python<'_>,
    prev_chain: &[u8],
    payloads: Vec<Bound<'_, PyBytes>>,
    content_hashes: Vec<Bound<'_, PyBytes>>,
    chain_hashes: Vec<Bound<'_, PyBytes>>,
    first_index: u64,
    indices: Option<Vec<u64>>,
) -> PyResult<ChainReport> {
    let prev = hash_arg(py, prev_chain)?;
    let n = payloads.len();
    if content_hashes.len() != n
        || chain_hashes.len() != n
        || indices.as_ref().is_some_and(|i| i.len() != n)
    {
        return Err(err(
            py,
            Error::InvalidArgument(
                "payloads, content_hashes, chain_hashes (and indices) must have equal lengths"
                    .into(),
            ),
        ));
    }
    let payloads: Vec<&[u8]> = payloads.iter().map(|b| b.as_bytes()).collect();
    let contents: Vec<&[u8]> = content_hashes.iter().map(|b| b.as_bytes()).collect();
    let chains: Vec<&[u8]> = chain_hashes.iter().map(|b| b.as_bytes()).collect();
    let indices = indices.as_deref();
    // Bytes objects are immutable and the lists above keep them alive while the GIL is off.
    let report = py.detach(|| {
        let events = payloads.iter().zip(&contents).zip(&chains).enumerate().map(
            |(i, ((payload, content), chain))| StoredEvent {
                index: indices.and_then(|ix| ix.get(i).copied()),
                payload,
                content_hash: content,
                chain_hash: chain,
            },
        );
        chain::verify_range(&prev, first_index, events)
    });
    let (first_bad_index, reason, detail) = match &report.first_bad {
        Some(bad) => (
            Some(bad.index),
            Some(bad.fault.code().to_owned()),
            Some(bad.fault.to_string()),
        ),
        None => (None, None, None),
    };
    Ok(ChainReport {
        ok: report.ok(),
        checked: report.checked,
        first_bad_index,
        reason,
        detail,
        last_chain_hash: PyBytes::new(py, &report.last_chain_hash).unbind(),
    })
}

// ---- Merkle tree ----------------------------------------------------------------------------

/// ``SHA-256(0x00 || data)``, the RFC 9162 leaf hash.
#[pyfunction]
pub fn leaf_hash<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &merkle::leaf_hash(data))
}

/// The RFC 9162 Merkle Tree Hash of the given leaf hashes.
#[pyfunction]
pub fn merkle_root<'py>(
    py: Python<'py>,
    leaf_hashes: Vec<Bound<'_, PyBytes>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let leaves = hashes_arg(py, &leaf_hashes)?;
    let root = py.detach(|| merkle::root(&leaves));
    Ok(PyBytes::new(py, &root))
}

/// The RFC 9162 inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves.
#[pyfunction]
pub fn inclusion_proof<'py>(
    py: Python<'py>,
    leaf_hashes: Vec<Bound<'_, PyBytes>>,
    index: u64,
    size: u64,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let leaves = hashes_arg(py, &leaf_hashes)?;
    let proof = py
        .detach(|| merkle::inclusion_proof(&leaves, index, size))
        .map_err(|e| err(py, e))?;
    Ok(bytes_list(py, &proof))
}

/// The RFC 9162 consistency proof from the tree of the first ``m`` leaves to that of the first
/// ``n``.
#[pyfunction]
pub fn consistency_proof<'py>(
    py: Python<'py>,
    leaf_hashes: Vec<Bound<'_, PyBytes>>,
    m: u64,
    n: u64,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let leaves = hashes_arg(py, &leaf_hashes)?;
    let proof = py
        .detach(|| merkle::consistency_proof(&leaves, m, n))
        .map_err(|e| err(py, e))?;
    Ok(bytes_list(py, &proof))
}

/// Hashes of the wrong length cannot verify: they make a proof false, not an error.
fn proof_hashes(items: &[Bound<'_, PyBytes>]) -> Option<Vec<Hash>> {
    items
        .iter()
        .map(|h| Hash::try_from(h.as_bytes()).ok())
        .collect()
}

/// True when ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``size`` leaves with
/// root ``root`` (RFC 9162 §2.1.3.2).
#[pyfunction]
pub fn verify_inclusion(
    leaf_hash: &[u8],
    index: u64,
    size: u64,
    proof: Vec<Bound<'_, PyBytes>>,
    root: &[u8],
) -> bool {
    let (Ok(leaf), Ok(root), Some(proof)) = (
        Hash::try_from(leaf_hash),
        Hash::try_from(root),
        proof_hashes(&proof),
    ) else {
        return false;
    };
    merkle::verify_inclusion(&leaf, index, size, &proof, &root).is_ok()
}

/// True when ``proof`` shows the tree of ``m`` leaves with root ``root_m`` to be a prefix of
/// the tree of ``n`` leaves with root ``root_n`` (RFC 9162 §2.1.4.2).
#[pyfunction]
pub fn verify_consistency(
    m: u64,
    n: u64,
    root_m: &[u8],
    root_n: &[u8],
    proof: Vec<Bound<'_, PyBytes>>,
) -> bool {
    let (Ok(old), Ok(new), Some(proof)) = (
        Hash::try_from(root_m),
        Hash::try_from(root_n),
        proof_hashes(&proof),
    ) else {
        return false;
    };
    merkle::verify_consistency(m, n, &old, &new, &proof).is_ok()
}

/// The roots of the perfect subtrees of an append-only tree: extends the root by one leaf in
/// O(log n). Persist ``size`` and ``peaks`` to resume.
#[pyclass(module = "acgs._acgs", name = "CompactRange")]
pub struct PyCompactRange {
    inner: merkle::CompactRange,
}

#[pymethods]
impl PyCompactRange {
    #[new]
    #[pyo3(signature = (size=0, peaks=Vec::new()))]
    fn new(py: Python<'_>, size: u64, peaks: Vec<Bound<'_, PyBytes>>) -> PyResult<Self> {
        let peaks = hashes_arg(py, &peaks)?;
        let inner = merkle::CompactRange::from_parts(size, peaks).map_err(|e| err(py, e))?;
        Ok(Self { inner })
    }

    /// Appends one leaf hash.
    fn append(&mut self, py: Python<'_>, leaf_hash: &[u8]) -> PyResult<()> {
        self.inner.append(hash_arg(py, leaf_hash)?);
        Ok(())
    }

    /// Appends leaf hashes in order.
    fn extend(&mut self, py: Python<'_>, leaf_hashes: Vec<Bound<'_, PyBytes>>) -> PyResult<()> {
        for leaf in hashes_arg(py, &leaf_hashes)? {
            self.inner.append(leaf);
        }
        Ok(())
    }

    /// The Merkle Tree Hash of the leaves so far.
    fn root<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.root())
    }

    #[getter]
    fn size(&self) -> u64 {
        self.inner.size()
    }

    #[getter]
    fn peaks<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        bytes_list(py, self.inner.peaks())
    }

    fn __repr__(&self) -> String {
        format!("<CompactRange size={}>", self.inner.size())
    }
}

// ---- checkpoints ----------------------------------------------------------------------------

/// A new Ed25519 signing key from OS randomness: ``(private key string, verifier key string)``.
#[pyfunction]
pub fn generate_signing_key(py: Python<'_>, name: &str) -> PyResult<(String, String)> {
    let key = SigningKey::generate(name).map_err(|e| err(py, e))?;
    Ok((key.to_key_string(), key.verifier().to_string()))
}

/// Signs the checkpoint ``(origin, size, root)`` as a signed note; no consistency check (see
/// ``Checkpointer``).
#[pyfunction]
pub fn sign_checkpoint(
    py: Python<'_>,
    private_key: &str,
    origin: &str,
    size: u64,
    root: &[u8],
) -> PyResult<String> {
    let key = SigningKey::parse(private_key).map_err(|e| err(py, e))?;
    let cp =
        checkpoint::Checkpoint::new(origin, size, hash_arg(py, root)?).map_err(|e| err(py, e))?;
    checkpoint::sign_checkpoint(&key, &cp).map_err(|e| err(py, e))
}

/// Verifies ``verifier_key``'s signature on a checkpoint note: ``(origin, size, root)``.
#[pyfunction]
pub fn verify_checkpoint<'py>(
    py: Python<'py>,
    note: &str,
    verifier_key: &str,
) -> PyResult<(String, u64, Bound<'py, PyBytes>)> {
    let key = VerifierKey::parse(verifier_key).map_err(|e| err(py, e))?;
    let cp = checkpoint::verify_checkpoint(note.as_bytes(), &key).map_err(|e| err(py, e))?;
    Ok((cp.origin, cp.size, PyBytes::new(py, &cp.root)))
}

/// The log's checkpoint signer: refuses a checkpoint inconsistent with the last one it signed.
#[pyclass(module = "acgs._acgs", name = "Checkpointer", frozen)]
pub struct PyCheckpointer {
    inner: Mutex<checkpoint::Checkpointer>,
}

impl PyCheckpointer {
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut checkpoint::Checkpointer) -> Result<T, Error>,
    ) -> PyResult<T> {
        let mut guard = self.inner.lock().map_err(|_| {
            err(
                py,
                Error::InvalidArgument("checkpointer lock poisoned".into()),
            )
        })?;
        f(&mut guard).map_err(|e| err(py, e))
    }
}

#[pymethods]
impl PyCheckpointer {
    /// A signer for ``origin`` with ``private_key``; ``last_note`` is the last checkpoint it
    /// signed (after a restart), verified with the same key.
    #[new]
    #[pyo3(signature = (private_key, origin, last_note=None))]
    fn new(
        py: Python<'_>,
        private_key: &str,
        origin: &str,
        last_note: Option<&str>,
    ) -> PyResult<Self> {
        let key = SigningKey::parse(private_key).map_err(|e| err(py, e))?;
        let inner = match last_note {
            Some(note) => checkpoint::Checkpointer::resume(key, origin, note.as_bytes()),
            None => checkpoint::Checkpointer::new(key, origin),
        }
        .map_err(|e| err(py, e))?;
        Ok(Self {
            inner: Mutex::new(inner),
        })
    }

    /// Signs ``(size, root)`` if ``proof`` is a consistency proof from the last signed
    /// checkpoint (empty for the first one and for re-signing the same head).
    #[pyo3(signature = (size, root, proof=Vec::new()))]
    fn sign(
        &self,
        py: Python<'_>,
        size: u64,
        root: &[u8],
        proof: Vec<Bound<'_, PyBytes>>,
    ) -> PyResult<String> {
        let root = hash_arg(py, root)?;
        let proof = hashes_arg(py, &proof)?;
        self.with(py, |c| c.sign(size, root, &proof))
    }

    #[getter]
    fn origin(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |c| Ok(c.origin().to_owned()))
    }

    #[getter]
    fn verifier_key(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |c| Ok(c.verifier().to_string()))
    }

    /// Size of the last signed checkpoint, or None.
    #[getter]
    fn last_size(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.with(py, |c| Ok(c.last().map(|cp| cp.size)))
    }

    /// Root of the last signed checkpoint, or None.
    #[getter]
    fn last_root<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let root = self.with(py, |c| Ok(c.last().map(|cp| cp.root)))?;
        Ok(root.map(|r| PyBytes::new(py, &r)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |c| {
            let last = c
                .last()
                .map_or_else(|| "None".to_owned(), |cp| cp.size.to_string());
            Ok(format!(
                "<Checkpointer origin='{}' last_size={last}>",
                c.origin()
            ))
        })
    }
}
