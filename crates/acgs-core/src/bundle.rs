//! OPA bundles as `opa build -t wasm` writes them: `/.manifest`, `/policy.wasm`, `data.json`
//! files (possibly nested), and the Rego sources, in a `.tar.gz`, a directory, or bytes. Bundles
//! ACGS builds also carry OPA's plan of the same entrypoints (`/plan.json`, `opa build -t plan`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bundles above these sizes are refused rather than read, so a hostile archive cannot exhaust
/// memory by decompressing without bound.
const MAX_BUNDLE_BYTES: u64 = 512 * 1024 * 1024;
const MAX_FILES: usize = 100_000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub roots: Option<Vec<String>>,
    #[serde(default)]
    pub wasm: Vec<WasmEntry>,
    #[serde(default)]
    pub rego_version: Option<i64>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WasmEntry {
    pub entrypoint: String,
    pub module: String,
}

/// A loaded bundle: its Wasm module, its merged data document and its digest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub wasm: Vec<u8>,
    /// The data document: every `data.json` merged at the path of its directory.
    pub data: serde_json::Value,
    /// SHA-256 over the bundle's files (see [`digest_files`]), hex.
    pub digest: String,
    /// SHA-256 (hex) of each Rego module the bundle carries, sorted.
    pub rego_digests: Vec<String>,
    /// `/plan.json` as the bundle carries it (unparsed), when it does.
    plan: Option<Vec<u8>>,
}

impl Bundle {
    /// Loads from a `.tar.gz` (or plain tar) file, a bundle directory, or a bare `.wasm` module.
    pub fn from_path(path: &Path) -> Result<Bundle> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::Bundle(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_dir() {
            return Bundle::from_files(read_dir_files(path)?);
        }
        if meta.len() > MAX_BUNDLE_BYTES {
            return Err(Error::Bundle(format!(
                "{} is larger than {MAX_BUNDLE_BYTES} bytes",
                path.display()
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Bundle(format!("cannot read {}: {e}", path.display())))?;
        Bundle::from_bytes(&bytes)
    }

    /// Loads from the bytes of a `.tar.gz`, a plain tar, or a bare Wasm module.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle> {
        if bytes.starts_with(b"\0asm") {
            let mut files = BTreeMap::new();
            files.insert("policy.wasm".to_owned(), bytes.to_vec());
            return Bundle::from_files(files);
        }
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let gz = flate2::read::GzDecoder::new(bytes);
            return Bundle::from_files(read_tar(gz.take(MAX_BUNDLE_BYTES + 1))?);
        }
        if bytes.get(257..262) == Some(b"ustar") {
            return Bundle::from_files(read_tar(bytes)?);
        }
        Err(Error::Bundle(
            "not a bundle: expected a gzip-compressed tar, a tar, or a Wasm module".into(),
        ))
    }

    /// Builds a bundle from its files, keyed by path relative to the bundle root (no leading `/`).
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Result<Bundle> {
        let manifest = match files.get(".manifest") {
            Some(raw) => serde_json::from_slice::<Manifest>(raw)
                .map_err(|e| Error::Bundle(format!(".manifest is not valid: {e}")))?,
            None => Manifest::default(),
        };

        let module_path = wasm_module_path(&manifest, &files)?;
        let wasm = files
            .get(&module_path)
            .ok_or_else(|| {
                if manifest.wasm.is_empty() {
                    Error::Bundle(
                        "bundle has no policy.wasm (was it built with `opa build -t wasm`?)".into(),
                    )
                } else {
                    Error::Bundle(format!(
                        ".manifest names module /{module_path}, which the bundle does not contain"
                    ))
                }
            })?
            .clone();
        if !wasm.starts_with(b"\0asm") {
            return Err(Error::Bundle(format!(
                "/{module_path} is not a WebAssembly module"
            )));
        }

        let mut data = serde_json::Value::Object(serde_json::Map::new());
        for (path, raw) in &files {
            let dir = match path.as_str() {
                "data.json" => "",
                p => match p.strip_suffix("/data.json") {
                    Some(dir) => dir,
                    None => continue,
                },
            };
            let doc: serde_json::Value = serde_json::from_slice(raw)
                .map_err(|e| Error::Bundle(format!("/{path} is not valid JSON: {e}")))?;
            merge_at(&mut data, dir, doc)
                .map_err(|why| Error::Bundle(format!("/{path}: {why}")))?;
        }

        let mut rego_digests: Vec<String> = files
            .iter()
            .filter(|(path, _)| path.ends_with(".rego"))
            .map(|(_, raw)| hex::encode(Sha256::digest(raw)))
            .collect();
        rego_digests.sort();
        Ok(Bundle {
            plan: files.get("plan.json").cloned(),
            digest: digest_files(&files),
            rego_digests,
            manifest,
            wasm,
            data,
        })
    }

    /// OPA's plan of the bundle's entrypoints (`/plan.json`), when the bundle carries one.
    pub fn plan_json(&self) -> Option<&[u8]> {
        self.plan.as_deref()
    }

    /// The entrypoints the manifest declares, in order.
    pub fn manifest_entrypoints(&self) -> Vec<String> {
        self.manifest
            .wasm
            .iter()
            .map(|w| w.entrypoint.clone())
            .collect()
    }
}

/// The bundle digest: SHA-256 over every file in path order, each contributing its path, a NUL,
/// its length as 8 big-endian bytes and its content. Independent of archive order, compression
/// and timestamps, so the same sources always give the same digest.
pub fn digest_files(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, content) in files {
        h.update(path.as_bytes());
        h.update([0u8]);
        h.update((content.len() as u64).to_be_bytes());
        h.update(content);
    }
    hex::encode(h.finalize())
}

fn wasm_module_path(manifest: &Manifest, files: &BTreeMap<String, Vec<u8>>) -> Result<String> {
    let mut modules: Vec<String> = manifest
        .wasm
        .iter()
        .map(|w| w.module.trim_start_matches('/').to_owned())
        .collect();
    modules.sort();
    modules.dedup();
    match modules.as_slice() {
        [] => {
            if files.contains_key("policy.wasm") {
                Ok("policy.wasm".into())
            } else {
                Err(Error::Bundle(
                    "bundle has no policy.wasm (was it built with `opa build -t wasm`?)".into(),
                ))
            }
        }
        [one] => Ok(one.clone()),
        many => Err(Error::Bundle(format!(
            "bundle has {} Wasm modules; ACGS loads bundles with one module",
            many.len()
        ))),
    }
}

fn merge_at(root: &mut serde_json::Value, dir: &str, doc: serde_json::Value) -> Result<(), String> {
    let mut node = root;
    for seg in dir.split('/').filter(|s| !s.is_empty()) {
        let obj = node
            .as_object_mut()
            .ok_or_else(|| format!("data at {seg:?} is not an object"))?;
        node = obj
            .entry(seg.to_owned())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
    merge_value(node, doc)
}

fn merge_value(into: &mut serde_json::Value, doc: serde_json::Value) -> Result<(), String> {
    match (into, doc) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge_value(existing, v)?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        (slot @ serde_json::Value::Object(_), v)
            if slot.as_object().is_some_and(|o| o.is_empty()) =>
        {
            *slot = v;
            Ok(())
        }
        _ => Err("data documents overlap at a non-object value".into()),
    }
}

fn clean_path(raw: &str) -> Option<String> {
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => return None,
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

fn read_tar<R: Read>(reader: R) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    let entries = archive
        .entries()
        .map_err(|e| Error::Bundle(format!("cannot read archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Bundle(format!("corrupt archive: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let raw_path = entry
            .path()
            .map_err(|e| Error::Bundle(format!("bad path in archive: {e}")))?
            .to_string_lossy()
            .into_owned();
        let path = clean_path(&raw_path)
            .ok_or_else(|| Error::Bundle(format!("unsafe path in archive: {raw_path:?}")))?;
        let size = entry.header().size().unwrap_or(0);
        total = total.saturating_add(size);
        if total > MAX_BUNDLE_BYTES || files.len() >= MAX_FILES {
            return Err(Error::Bundle(format!(
                "archive expands past {MAX_BUNDLE_BYTES} bytes or {MAX_FILES} files"
            )));
        }
        let mut content = Vec::with_capacity(usize::try_from(size.min(1 << 20)).unwrap_or(0));
        entry
            .read_to_end(&mut content)
            .map_err(|e| Error::Bundle(format!("corrupt archive member {path}: {e}")))?;
        files.insert(path, content);
    }
    if files.is_empty() {
        return Err(Error::Bundle("archive holds no files".into()));
    }
    Ok(files)
}

fn read_dir_files(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut total: u64 = 0;
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| Error::Bundle(format!("cannot read {}: {e}", dir.display())))?;
        for entry in rd {
            let entry =
                entry.map_err(|e| Error::Bundle(format!("cannot read {}: {e}", dir.display())))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| Error::Bundle(format!("cannot stat {}: {e}", path.display())))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .map_err(|_| Error::Internal("path outside bundle root".into()))?
                    .to_string_lossy()
                    .replace('\\', "/");
                let content = std::fs::read(&path)
                    .map_err(|e| Error::Bundle(format!("cannot read {}: {e}", path.display())))?;
                total = total.saturating_add(content.len() as u64);
                if total > MAX_BUNDLE_BYTES || files.len() >= MAX_FILES {
                    return Err(Error::Bundle(format!(
                        "bundle directory holds more than {MAX_BUNDLE_BYTES} bytes or {MAX_FILES} files"
                    )));
                }
                files.insert(rel, content);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WASM_MAGIC: &[u8] = b"\0asm\x01\0\0\0";

    fn files(entries: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn names_what_is_missing() {
        let err = Bundle::from_files(files(&[("data.json", b"{}")])).unwrap_err();
        assert!(err.to_string().contains("no policy.wasm"), "{err}");
        let err = Bundle::from_files(files(&[(
            ".manifest",
            br#"{"wasm":[{"entrypoint":"a/b","module":"/x.wasm"}]}"#,
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("/x.wasm"), "{err}");
        let err = Bundle::from_files(files(&[(".manifest", b"{nope")])).unwrap_err();
        assert!(err.to_string().contains(".manifest"), "{err}");
        let err = Bundle::from_files(files(&[("policy.wasm", b"hello")])).unwrap_err();
        assert!(err.to_string().contains("not a WebAssembly"), "{err}");
        let err = Bundle::from_bytes(b"garbage").unwrap_err();
        assert!(err.to_string().contains("not a bundle"), "{err}");
    }

    #[test]
    fn merges_nested_data_and_digests_content_only() {
        let b = Bundle::from_files(files(&[
            ("policy.wasm", WASM_MAGIC),
            ("data.json", br#"{"a":1}"#),
            ("x/y/data.json", br#"{"b":2}"#),
        ]))
        .unwrap();
        assert_eq!(b.data, serde_json::json!({"a":1,"x":{"y":{"b":2}}}));
        let again = Bundle::from_files(files(&[
            ("x/y/data.json", br#"{"b":2}"#),
            ("data.json", br#"{"a":1}"#),
            ("policy.wasm", WASM_MAGIC),
        ]))
        .unwrap();
        assert_eq!(b.digest, again.digest);
        let other = Bundle::from_files(files(&[
            ("policy.wasm", WASM_MAGIC),
            ("data.json", br#"{"a":2}"#),
        ]))
        .unwrap();
        assert_ne!(b.digest, other.digest);
    }

    #[test]
    fn carries_the_plan_when_there_is_one() {
        let plain = Bundle::from_files(files(&[("policy.wasm", WASM_MAGIC)])).unwrap();
        assert_eq!(plain.plan_json(), None);
        let planned = Bundle::from_files(files(&[
            ("policy.wasm", WASM_MAGIC),
            ("plan.json", br#"{"plans":{"plans":[]}}"#),
        ]))
        .unwrap();
        assert_eq!(planned.plan_json(), Some(&br#"{"plans":{"plans":[]}}"#[..]));
        assert_ne!(plain.digest, planned.digest);
    }

    #[test]
    fn refuses_path_traversal() {
        assert_eq!(clean_path("/../etc/passwd"), None);
        assert_eq!(clean_path("/a/./b"), Some("a/b".into()));
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let err = Bundle::from_bytes(&[0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap_err();
        assert!(matches!(err, Error::Bundle(_)));
    }
}
