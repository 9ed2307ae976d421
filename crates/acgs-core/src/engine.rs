//! The policy engine: a loaded bundle, a pool of Wasm instances, and atomic reloads.

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::value::Value;
use crate::wasm::{Format, Instance, Limits, Policy};

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub limits: Limits,
    /// Idle instances kept per bundle. Busy instances are not capped: each concurrent caller
    /// gets its own, so throughput scales with threads.
    pub max_idle: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        EngineOptions {
            limits: Limits::default(),
            max_idle: cores.max(2) * 2,
        }
    }
}

/// A bundle ready to evaluate: its compiled policy and a pool of instances.
pub struct Loaded {
    pub bundle_digest: String,
    pub revision: String,
    policy: Arc<Policy>,
    idle: Mutex<Vec<Instance>>,
    max_idle: usize,
    /// Entrypoint used when a caller names none: the first in the manifest, else id 0.
    default_entrypoint: i32,
    pub data: serde_json::Value,
}

impl Loaded {
    fn new(bundle: Bundle, options: EngineOptions) -> Result<Loaded> {
        let (policy, first) = Policy::compile(&bundle.wasm, &bundle.data, options.limits)?;
        let default_entrypoint = bundle
            .manifest
            .wasm
            .first()
            .and_then(|w| policy.entrypoints().get(&w.entrypoint).copied())
            .unwrap_or(0);
        Ok(Loaded {
            bundle_digest: bundle.digest,
            revision: bundle.manifest.revision,
            policy,
            idle: Mutex::new(vec![first]),
            max_idle: options.max_idle.max(1),
            default_entrypoint,
            data: bundle.data,
        })
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Resolves an entrypoint name (`"pkg/rule"`, also accepted with dots or a `data.` prefix).
    pub fn entrypoint_id(&self, name: Option<&str>) -> Result<i32> {
        let Some(name) = name else {
            return Ok(self.default_entrypoint);
        };
        let eps = self.policy.entrypoints();
        if let Some(id) = eps.get(name) {
            return Ok(*id);
        }
        let normal = name
            .trim_start_matches("data.")
            .trim_start_matches('/')
            .replace('.', "/");
        eps.get(normal.trim_end_matches('/'))
            .copied()
            .ok_or_else(|| Error::UnknownEntrypoint(name.to_owned()))
    }

    /// Runs `f` on an idle instance (or a new one). A poisoned instance is dropped.
    fn with_instance<T>(&self, f: impl FnOnce(&mut Instance) -> Result<T>) -> Result<T> {
        let popped = self.idle.lock().pop();
        let mut inst = match popped {
            Some(i) => i,
            None => Instance::new(&self.policy)?,
        };
        let r = f(&mut inst);
        if !inst.is_poisoned() {
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push(inst);
            }
        }
        r
    }

    pub fn idle_instances(&self) -> usize {
        self.idle.lock().len()
    }

    /// Linear memory held by idle instances, in bytes.
    pub fn idle_memory_bytes(&self) -> usize {
        self.idle.lock().iter().map(Instance::memory_bytes).sum()
    }
}

/// The engine callers hold. Cheap to share across threads.
pub struct Engine {
    current: ArcSwap<Loaded>,
    options: EngineOptions,
}

/// How far the engine trusts input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCheck {
    /// Check the bytes are one JSON value (or Rego value text) before the policy sees them.
    Validate,
    /// The bytes come from ACGS's own serializer and are known to be valid JSON.
    Trusted,
}

impl Engine {
    pub fn new(bundle: Bundle, options: EngineOptions) -> Result<Engine> {
        let loaded = Loaded::new(bundle, options)?;
        Ok(Engine {
            current: ArcSwap::from_pointee(loaded),
            options,
        })
    }

    /// Swaps in a new bundle. Evaluations in flight finish on the bundle they started with;
    /// if the new bundle fails to load, the old one stays.
    pub fn reload(&self, bundle: Bundle) -> Result<()> {
        let loaded = Loaded::new(bundle, self.options)?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The bundle in use now.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// Evaluates one input; returns the result set text (`[{"result": ...}]` or `[]`).
    pub fn evaluate(
        &self,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
        check: InputCheck,
        format: Format,
    ) -> Result<Vec<u8>> {
        let loaded = self.current.load();
        let ep = loaded.entrypoint_id(entrypoint)?;
        if check == InputCheck::Validate {
            if let Some(bytes) = input {
                validate_input(bytes)?;
            }
        }
        loaded.with_instance(|inst| inst.eval(ep, input, format))
    }

    /// Evaluates many inputs on up to `threads` threads; results keep the inputs' order.
    pub fn evaluate_many(
        &self,
        entrypoint: Option<&str>,
        inputs: &[Vec<u8>],
        check: InputCheck,
        format: Format,
        threads: usize,
    ) -> Result<Vec<Result<Vec<u8>>>> {
        let loaded = self.current.load_full();
        let ep = loaded.entrypoint_id(entrypoint)?;
        let run = |input: &Vec<u8>| -> Result<Vec<u8>> {
            if check == InputCheck::Validate {
                validate_input(input)?;
            }
            loaded.with_instance(|inst| inst.eval(ep, Some(input), format))
        };
        let threads = threads.clamp(1, inputs.len().max(1));
        if threads == 1 {
            return Ok(inputs.iter().map(run).collect());
        }
        let chunk = inputs.len().div_ceil(threads);
        let mut out: Vec<Result<Vec<u8>>> = Vec::with_capacity(inputs.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = inputs
                .chunks(chunk.max(1))
                .map(|part| s.spawn(|| part.iter().map(run).collect::<Vec<_>>()))
                .collect();
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part),
                    Err(_) => return Err(Error::Internal("evaluation thread panicked".into())),
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Accepts one JSON value, or Rego value text (which the policy's parser also reads).
fn validate_input(bytes: &[u8]) -> Result<()> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Ok(());
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| Error::InvalidInput("input is not UTF-8".into()))?;
    Value::parse_rego(text)
        .map(|_| ())
        .map_err(|e| Error::InvalidInput(format!("input is not a JSON value: {e}")))
}
