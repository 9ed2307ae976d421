//! Shared setup for the host benchmarks: the policy cases and one ready-to-call evaluator per
//! host, each loaded from the same committed bundle (so the same `policy.wasm` and data).

pub mod peers;

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
#[cfg(feature = "peer")]
use serde_json::value::RawValue;

/// One benchmark policy: its bundle, entrypoint and input.
pub struct Case {
    pub name: &'static str,
    pub entrypoint: &'static str,
    pub bundle: PathBuf,
    pub input: Vec<u8>,
}

/// The `bench/` directory (this crate lives in `bench/rust`).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn cases() -> Result<Vec<Case>> {
    let dir = bench_dir();
    [("small", "bench/small/allow"), ("medium", "bench/medium/decision")]
        .into_iter()
        .map(|(name, entrypoint)| {
            let input_path = dir.join("inputs").join(format!("{name}.json"));
            let input = std::fs::read(&input_path).with_context(|| format!("reading {}", input_path.display()))?;
            // One compact line, as a client would send it; every host gets these same bytes.
            let input = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&input)?)?;
            Ok(Case {
                name,
                entrypoint,
                bundle: dir.join("bundles").join(format!("{name}.tar.gz")),
                input,
            })
        })
        .collect()
}

/// ACGS as a caller uses it: an `Engine` over the bundle, inputs validated, JSON out. The
/// host comparison turns the decision cache off (`cache_capacity: 0`) so every call is a
/// real evaluation, as it is for the peers.
pub struct Acgs {
    pub engine: acgs_core::Engine,
    pub entrypoint: &'static str,
}

impl Acgs {
    pub fn load(case: &Case) -> Result<Acgs> {
        Acgs::load_with(
            case,
            acgs_core::EngineOptions {
                cache_capacity: 0,
                ..acgs_core::EngineOptions::default()
            },
        )
    }

    pub fn load_with(case: &Case, options: acgs_core::EngineOptions) -> Result<Acgs> {
        let bundle = acgs_core::Bundle::from_path(&case.bundle).map_err(|e| anyhow!("{e}"))?;
        let engine = acgs_core::Engine::new(bundle, options).map_err(|e| anyhow!("{e}"))?;
        Ok(Acgs {
            engine,
            entrypoint: case.entrypoint,
        })
    }

    pub fn eval(&self, input: &[u8]) -> Result<Vec<u8>> {
        self.engine
            .evaluate(
                Some(self.entrypoint),
                Some(input),
                acgs_core::InputCheck::Validate,
                acgs_core::Format::Json,
            )
            .map_err(|e| anyhow!("{e}"))
    }
}

#[cfg(feature = "peer")]
/// rust-opa-wasm's compiled module, shared by all its instances (as its docs set it up).
pub struct OpaWasmModule {
    pub engine: opa_wasm::wasmtime::Engine,
    pub module: opa_wasm::wasmtime::Module,
    pub data: serde_json::Value,
    pub entrypoint: &'static str,
}

#[cfg(feature = "peer")]
/// One rust-opa-wasm instance: a store and a policy with data loaded. Not `Sync`, so each
/// thread gets its own.
pub struct OpaWasm {
    store: opa_wasm::wasmtime::Store<()>,
    policy: opa_wasm::Policy<opa_wasm::DefaultContext>,
    entrypoint: &'static str,
}

#[cfg(feature = "peer")]
impl OpaWasmModule {
    /// Reads `policy.wasm` and the data document out of the bundle with ACGS's own bundle
    /// reader, so both hosts run byte-identical modules.
    pub fn load(case: &Case) -> Result<OpaWasmModule> {
        let bundle = acgs_core::Bundle::from_path(&case.bundle).map_err(|e| anyhow!("{e}"))?;
        // Its docs also call `Config::async_support(true)`, which wasmtime 48 no longer needs.
        let engine = opa_wasm::wasmtime::Engine::new(&opa_wasm::wasmtime::Config::new())?;
        let module = opa_wasm::wasmtime::Module::new(&engine, &bundle.wasm)?;
        Ok(OpaWasmModule {
            engine,
            module,
            data: bundle.data,
            entrypoint: case.entrypoint,
        })
    }

    pub fn instance(&self) -> Result<OpaWasm> {
        let mut store = opa_wasm::wasmtime::Store::new(&self.engine, ());
        let policy = pollster::block_on(async {
            let runtime = opa_wasm::Runtime::new(&mut store, &self.module).await?;
            runtime.with_data(&mut store, &self.data).await
        })?;
        Ok(OpaWasm {
            store,
            policy,
            entrypoint: self.entrypoint,
        })
    }
}

#[cfg(feature = "peer")]
impl OpaWasm {
    /// Raw JSON in, raw result-set JSON out: no conversion to or from typed values, which is
    /// the closest match to ACGS's bytes-in, bytes-out call.
    pub fn eval(&mut self, input: &RawValue) -> Result<Box<RawValue>> {
        pollster::block_on(self.policy.evaluate(&mut self.store, self.entrypoint, &input))
    }
}

/// Parses a result set for comparisons between hosts.
pub fn result_set(bytes: &[u8]) -> Result<serde_json::Value> {
    Ok(serde_json::from_slice(bytes)?)
}
