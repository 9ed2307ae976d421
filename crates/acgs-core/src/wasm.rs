//! The OPA Wasm host: one compiled policy module ([`Policy`]) and its instances ([`Instance`]),
//! following the OPA Wasm ABI 1.x (`opa_eval` fast path from 1.2, heap stash from 1.3).
//!
//! Every access to linear memory goes through wasmtime's bounds-checked `Memory` API, so no
//! `unsafe` is needed here.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{
    Caller, Config, Engine as WasmEngine, Extern, Linker, Memory, MemoryType, Module, Store, Trap,
    TypedFunc,
};

use crate::builtins::{self, BuiltinFn, Context};
use crate::error::{Error, Result};
use crate::value::Value;

/// Epoch ticks per second: deadlines are counted in milliseconds.
const EPOCH_TICK: Duration = Duration::from_millis(1);
const PAGE: u64 = 65_536;

/// Per-evaluation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget for one evaluation, in milliseconds. 0 means no deadline (trusted
    /// bundles only: a policy that loops then blocks its thread).
    pub timeout_ms: u64,
    /// Cap on one instance's linear memory, in bytes.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 1_000,
            memory_bytes: 512 * 1024 * 1024,
        }
    }
}

/// The process-wide wasmtime engines. Sharing one lets one ticker thread drive every deadline.
/// `deadline: false` gives the engine for policies run without a deadline
/// (`Limits { timeout_ms: 0 }`): its code carries no epoch checks, which saves about a sixth of
/// the evaluation time, so it is for trusted bundles only.
fn wasm_engine(deadline: bool) -> Result<&'static WasmEngine> {
    static TIMED: OnceLock<std::result::Result<WasmEngine, String>> = OnceLock::new();
    static UNTIMED: OnceLock<std::result::Result<WasmEngine, String>> = OnceLock::new();
    let cell = if deadline { &TIMED } else { &UNTIMED };
    cell.get_or_init(|| {
        let mut cfg = Config::new();
        cfg.epoch_interruption(deadline);
        cfg.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if std::env::var_os("ACGS_WASM_PERFMAP").is_some() {
            // Names the guest's functions in /tmp/perf-<pid>.map, so `perf report` can tell
            // the policy's own code from the host's when profiling evaluations.
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(dir) = std::env::var_os("ACGS_WASM_CACHE_DIR") {
            // Conformance runs load thousands of modules; caching machine code makes
            // the second run cheap. Off unless asked for, so a library never writes to $HOME.
            let cache_cfg = {
                let mut c = wasmtime::CacheConfig::new();
                c.with_directory(std::path::PathBuf::from(dir));
                c
            };
            if let Ok(cache) = wasmtime::Cache::new(cache_cfg) {
                cfg.cache(Some(cache));
            }
        }
        let engine = WasmEngine::new(&cfg).map_err(|e| e.to_string())?;
        if deadline {
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("acgs-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        Ok(engine)
    })
    .as_ref()
    .map_err(|e| Error::Internal(format!("cannot start wasmtime: {e}")))
}

/// Caps memory growth and remembers whether the cap was what stopped a growth, so an
/// allocation failure inside the module can be reported as a memory-limit error.
struct Limiter {
    max_bytes: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        if !ok {
            self.hit = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The module's exports that host functions call back into.
#[derive(Clone)]
struct Callbacks {
    malloc: TypedFunc<i32, i32>,
    value_dump: TypedFunc<i32, i32>,
    value_parse: TypedFunc<(i32, i32), i32>,
}

/// A resolved host builtin. `memo` marks random builtins whose result OPA fixes for the rest of
/// one evaluation (the same arguments give the same uuid or number).
#[derive(Clone, Copy)]
struct HostBuiltin {
    func: BuiltinFn,
    memo: bool,
}

struct HostState {
    limiter: Limiter,
    builtins: Arc<[Option<HostBuiltin>]>,
    /// Results of memoised builtins in this evaluation, keyed by id and argument text.
    memo: std::collections::HashMap<(i32, String), Option<Value>>,
    ctx: Context,
    abort: Option<String>,
    memory: Option<Memory>,
    callbacks: Option<Callbacks>,
}

/// A compiled policy module with its resolved builtins and entrypoints.
pub struct Policy {
    module: Module,
    linker: Linker<HostState>,
    memory_type: MemoryType,
    builtins: Arc<[Option<HostBuiltin>]>,
    entrypoints: BTreeMap<String, i32>,
    /// Names of the host builtins the module calls.
    builtin_names: Vec<String>,
    abi_minor: i32,
    data_json: Vec<u8>,
    limits: Limits,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("entrypoints", &self.entrypoints)
            .field("builtins", &self.builtin_names)
            .field("abi_minor", &self.abi_minor)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Compiles `wasm`, checks its ABI, resolves its builtins and probes one instance (which
    /// the caller gets back to seed a pool). `data` is the JSON data document.
    pub fn compile(
        wasm: &[u8],
        data: &serde_json::Value,
        limits: Limits,
    ) -> Result<(Arc<Policy>, Instance)> {
        let engine = wasm_engine(limits.timeout_ms > 0)?;
        let module = Module::new(engine, wasm)
            .map_err(|e| Error::Abi(format!("cannot compile module: {e:#}")))?;

        let mut memory_type = MemoryType::new(2, None);
        for import in module.imports() {
            if let (("env", "memory"), wasmtime::ExternType::Memory(mt)) =
                ((import.module(), import.name()), import.ty())
            {
                memory_type =
                    MemoryType::new(u32::try_from(mt.minimum()).unwrap_or(2).max(2), None);
            }
        }
        for required in [
            "opa_malloc",
            "opa_heap_ptr_get",
            "opa_heap_ptr_set",
            "opa_json_parse",
            "opa_json_dump",
            "opa_value_dump",
            "opa_value_parse",
            "builtins",
            "entrypoints",
        ] {
            if module.get_export(required).is_none() {
                return Err(Error::Abi(format!("module does not export {required}")));
            }
        }

        let linker = host_linker(engine)?;
        let data_json = serde_json::to_vec(data).map_err(|e| Error::Internal(e.to_string()))?;
        let mut policy = Policy {
            module,
            linker,
            memory_type,
            builtins: Arc::from(Vec::new()),
            entrypoints: BTreeMap::new(),
            builtin_names: Vec::new(),
            abi_minor: 0,
            data_json,
            limits,
        };

        // A first instance, without data, reads the module's metadata. OPA declares a
        // two-page memory even when its data segments need more; instantiation then traps
        // while copying them in, so grow the initial memory until they fit (up to the cap).
        let max_pages = u32::try_from(limits.memory_bytes / PAGE).unwrap_or(u32::MAX);
        let mut pages = u32::try_from(policy.memory_type.minimum()).unwrap_or(2);
        let mut probe = loop {
            match policy.raw_instance() {
                Ok(p) => break p,
                Err(Error::Abi(m)) if m.contains("out of bounds") && pages < max_pages => {
                    pages = pages.saturating_mul(2).min(max_pages);
                    policy.memory_type = MemoryType::new(pages, None);
                }
                Err(e) => return Err(e),
            }
        };
        let major = probe.global_i32("opa_wasm_abi_version").unwrap_or(1);
        if major != 1 {
            return Err(Error::Abi(format!(
                "unsupported OPA Wasm ABI major version {major}"
            )));
        }
        policy.abi_minor = probe.global_i32("opa_wasm_abi_minor_version").unwrap_or(0);

        let builtin_ids = probe.call_json_export("builtins")?;
        let mut table: Vec<Option<HostBuiltin>> = Vec::new();
        let mut missing = Vec::new();
        for (name, id) in object_of_ids(&builtin_ids, "builtins")? {
            let idx =
                usize::try_from(id).map_err(|_| Error::Abi(format!("bad builtin id {id}")))?;
            if idx >= 100_000 {
                return Err(Error::Abi(format!("bad builtin id {id}")));
            }
            if table.len() <= idx {
                table.resize(idx + 1, None);
            }
            match builtins::lookup(&name) {
                Some(func) => {
                    if let Some(slot) = table.get_mut(idx) {
                        let memo = matches!(name.as_str(), "rand.intn" | "uuid.rfc4122");
                        *slot = Some(HostBuiltin { func, memo });
                    }
                }
                None => missing.push(name.clone()),
            }
            policy.builtin_names.push(name);
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::UnknownBuiltin(missing.join(", ")));
        }
        policy.builtins = Arc::from(table);
        policy.entrypoints = object_of_ids(&probe.call_json_export("entrypoints")?, "entrypoints")?
            .into_iter()
            .collect();
        drop(probe);

        let policy = Arc::new(policy);
        let first = Instance::new(&policy)?;
        Ok((policy, first))
    }

    pub fn entrypoints(&self) -> &BTreeMap<String, i32> {
        &self.entrypoints
    }

    pub fn builtin_names(&self) -> &[String] {
        &self.builtin_names
    }

    pub fn abi_minor(&self) -> i32 {
        self.abi_minor
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn raw_instance(&self) -> Result<RawInstance> {
        let engine = self.module.engine();
        let state = HostState {
            limiter: Limiter {
                max_bytes: usize::try_from(self.limits.memory_bytes).unwrap_or(usize::MAX),
                hit: false,
            },
            builtins: self.builtins.clone(),
            memo: std::collections::HashMap::new(),
            ctx: Context::now(),
            abort: None,
            memory: None,
            callbacks: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.limits.timeout_ms > 0 {
            store.set_epoch_deadline(self.limits.timeout_ms.saturating_add(1));
            store.epoch_deadline_trap();
        }
        let memory = Memory::new(&mut store, self.memory_type.clone()).map_err(|e| {
            limit_or(&store, e, |m| {
                Error::Abi(format!("cannot create memory: {m}"))
            })
        })?;
        let mut linker = self.linker.clone();
        linker
            .define(&store, "env", "memory", memory)
            .map_err(|e| Error::Internal(format!("{e:#}")))?;
        let instance = linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| Error::Abi(format!("cannot instantiate module: {e:#}")))?;
        let f = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_func(&mut *store, name)
                .ok_or_else(|| Error::Abi(format!("module does not export {name}")))
        };
        let callbacks = Callbacks {
            malloc: typed(f(&mut store, "opa_malloc")?, &store, "opa_malloc")?,
            value_dump: typed(f(&mut store, "opa_value_dump")?, &store, "opa_value_dump")?,
            value_parse: typed(f(&mut store, "opa_value_parse")?, &store, "opa_value_parse")?,
        };
        let heap_ptr_get = typed(
            f(&mut store, "opa_heap_ptr_get")?,
            &store,
            "opa_heap_ptr_get",
        )?;
        let heap_ptr_set = typed(
            f(&mut store, "opa_heap_ptr_set")?,
            &store,
            "opa_heap_ptr_set",
        )?;
        let json_parse = typed(f(&mut store, "opa_json_parse")?, &store, "opa_json_parse")?;
        let json_dump = typed(f(&mut store, "opa_json_dump")?, &store, "opa_json_dump")?;
        let eval_fast = match instance.get_func(&mut store, "opa_eval") {
            Some(func) => Some(typed(func, &store, "opa_eval")?),
            None => None,
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().callbacks = Some(callbacks.clone());
        Ok(RawInstance {
            store,
            instance,
            memory,
            callbacks,
            heap_ptr_get,
            heap_ptr_set,
            json_parse,
            json_dump,
            eval_fast,
        })
    }
}

fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    func: wasmtime::Func,
    store: &Store<HostState>,
    name: &str,
) -> Result<TypedFunc<P, R>> {
    func.typed::<P, R>(store)
        .map_err(|e| Error::Abi(format!("export {name} has an unexpected signature: {e:#}")))
}

fn object_of_ids(v: &serde_json::Value, what: &str) -> Result<Vec<(String, i32)>> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Abi(format!("{what}() did not return an object")))?;
    obj.iter()
        .map(|(k, id)| {
            id.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .map(|i| (k.clone(), i))
                .ok_or_else(|| Error::Abi(format!("{what}() has a non-integer id for {k}")))
        })
        .collect()
}

/// Reads a NUL-terminated string at `addr`.
fn read_cstr(memory: &Memory, store: impl wasmtime::AsContext, addr: i32) -> Result<Vec<u8>> {
    let data = memory.data(&store);
    let start = usize::try_from(addr)
        .map_err(|_| Error::Evaluation(format!("bad string address {addr}")))?;
    let tail = data
        .get(start..)
        .ok_or_else(|| Error::Evaluation(format!("string address {addr} is out of bounds")))?;
    let len = memchr::memchr(0, tail)
        .ok_or_else(|| Error::Evaluation("unterminated string in module memory".into()))?;
    Ok(tail.get(..len).unwrap_or_default().to_vec())
}

fn host_linker(engine: &WasmEngine) -> Result<Linker<HostState>> {
    let mut linker: Linker<HostState> = Linker::new(engine);
    let err = |e: wasmtime::Error| Error::Internal(format!("{e:#}"));
    linker
        .func_wrap(
            "env",
            "opa_abort",
            |mut caller: Caller<'_, HostState>, addr: i32| -> wasmtime::Result<()> {
                let msg = caller
                    .data()
                    .memory
                    .and_then(|m| read_cstr(&m, &caller, addr).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_else(|| "policy aborted".into());
                caller.data_mut().abort = Some(msg.clone());
                Err(wasmtime::Error::msg(format!("opa_abort: {msg}")))
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_println",
            |caller: Caller<'_, HostState>, addr: i32| {
                if std::env::var_os("ACGS_POLICY_PRINT").is_some() {
                    if let Some(m) = caller.data().memory {
                        if let Ok(b) = read_cstr(&m, &caller, addr) {
                            eprintln!("{}", String::from_utf8_lossy(&b));
                        }
                    }
                }
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_builtin0",
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32| call_builtin(&mut c, id, &[]),
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_builtin1",
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32| {
                call_builtin(&mut c, id, &[a])
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_builtin2",
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32| {
                call_builtin(&mut c, id, &[a, b])
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_builtin3",
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32, d: i32| {
                call_builtin(&mut c, id, &[a, b, d])
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "env",
            "opa_builtin4",
            |mut c: Caller<'_, HostState>, id: i32, _ctx: i32, a: i32, b: i32, d: i32, e: i32| {
                call_builtin(&mut c, id, &[a, b, d, e])
            },
        )
        .map_err(err)?;
    Ok(linker)
}

/// Runs a host builtin: dumps each argument as Rego text (sets survive), calls the Rust
/// implementation, and parses the result back into the module's heap. Undefined and builtin
/// errors both return 0, which the module treats as undefined (OPA's non-strict behaviour).
fn call_builtin(
    caller: &mut Caller<'_, HostState>,
    id: i32,
    args: &[i32],
) -> wasmtime::Result<i32> {
    let (Some(memory), Some(cb)) = (caller.data().memory, caller.data().callbacks.clone()) else {
        return Err(wasmtime::Error::msg(
            "builtin called before the instance was ready",
        ));
    };
    let builtin = usize::try_from(id)
        .ok()
        .and_then(|i| caller.data().builtins.get(i).copied().flatten());
    let Some(builtin) = builtin else {
        caller.data_mut().abort = Some(format!("unknown builtin id {id}"));
        return Err(wasmtime::Error::msg(format!("unknown builtin id {id}")));
    };
    let mut values = Vec::with_capacity(args.len());
    for &arg in args {
        let text_addr = cb.value_dump.call(&mut *caller, arg)?;
        let text = read_cstr(&memory, &*caller, text_addr).map_err(wasmtime::Error::msg)?;
        let text = std::str::from_utf8(&text).map_err(wasmtime::Error::msg)?;
        match Value::parse_rego(text) {
            Ok(v) => values.push(v),
            Err(_) => return Ok(0),
        }
    }
    let ctx = caller.data().ctx.clone();
    let outcome = if builtin.memo {
        let key = (
            id,
            values
                .iter()
                .map(Value::to_rego)
                .collect::<Vec<_>>()
                .join(","),
        );
        match caller.data().memo.get(&key) {
            Some(hit) => hit.clone(),
            None => {
                let fresh = (builtin.func)(&values, &ctx).ok().flatten();
                caller.data_mut().memo.insert(key, fresh.clone());
                fresh
            }
        }
    } else {
        (builtin.func)(&values, &ctx).ok().flatten()
    };
    let Some(result) = outcome else {
        return Ok(0);
    };
    let text = result.to_rego();
    let len = i32::try_from(text.len()).map_err(wasmtime::Error::msg)?;
    let addr = cb.malloc.call(&mut *caller, len)?;
    memory.write(
        &mut *caller,
        usize::try_from(addr).unwrap_or(usize::MAX),
        text.as_bytes(),
    )?;
    cb.value_parse.call(&mut *caller, (addr, len))
}

/// Maps a wasmtime error to the right core error, consulting what the host state saw.
fn limit_or(
    store: &Store<HostState>,
    e: wasmtime::Error,
    other: impl FnOnce(String) -> Error,
) -> Error {
    if store.data().limiter.hit {
        return Error::MemoryLimit(
            u64::try_from(store.data().limiter.max_bytes).unwrap_or(u64::MAX),
        );
    }
    other(format!("{e:#}"))
}

/// `opa_eval(reserved, entrypoint, data, input, input_len, heap, format) -> result`.
type OpaEval = TypedFunc<(i32, i32, i32, i32, i32, i32, i32), i32>;

struct RawInstance {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    memory: Memory,
    callbacks: Callbacks,
    heap_ptr_get: TypedFunc<(), i32>,
    heap_ptr_set: TypedFunc<i32, ()>,
    json_parse: TypedFunc<(i32, i32), i32>,
    json_dump: TypedFunc<i32, i32>,
    eval_fast: Option<OpaEval>,
}

impl RawInstance {
    fn global_i32(&mut self, name: &str) -> Option<i32> {
        match self.instance.get_export(&mut self.store, name)? {
            Extern::Global(g) => g.get(&mut self.store).i32(),
            _ => None,
        }
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>> {
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| Error::Abi(format!("module does not export {name}")))?;
        typed(f, &self.store, name)
    }

    /// Calls an export returning a value address and reads that value as JSON.
    fn call_json_export(&mut self, name: &str) -> Result<serde_json::Value> {
        let f = self.func::<(), i32>(name)?;
        let addr = f.call(&mut self.store, ()).map_err(|e| self.fault(e))?;
        let text_addr = self
            .json_dump
            .call(&mut self.store, addr)
            .map_err(|e| self.fault(e))?;
        let raw = read_cstr(&self.memory, &self.store, text_addr)?;
        serde_json::from_slice(&raw)
            .map_err(|e| Error::Abi(format!("{name}() returned invalid JSON: {e}")))
    }

    /// Copies `bytes` into a fresh heap allocation.
    fn alloc_bytes(&mut self, bytes: &[u8]) -> Result<(i32, i32)> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| Error::InvalidInput("value larger than 2 GiB".into()))?;
        let addr = self
            .callbacks
            .malloc
            .call(&mut self.store, len)
            .map_err(|e| self.fault(e))?;
        self.memory
            .write(
                &mut self.store,
                usize::try_from(addr).unwrap_or(usize::MAX),
                bytes,
            )
            .map_err(|e| Error::Evaluation(format!("cannot write to module memory: {e}")))?;
        Ok((addr, len))
    }

    /// Classifies a failed call: deadline, memory cap, policy abort, or another trap.
    fn fault(&self, e: wasmtime::Error) -> Error {
        if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            return Error::Timeout(0);
        }
        if self.store.data().limiter.hit {
            return Error::MemoryLimit(
                u64::try_from(self.store.data().limiter.max_bytes).unwrap_or(u64::MAX),
            );
        }
        if let Some(msg) = &self.store.data().abort {
            return Error::Evaluation(msg.clone());
        }
        Error::Evaluation(format!("policy trapped: {e}"))
    }
}

/// One instance of a policy: its own store, memory and loaded data. Not shared between threads
/// at once; the pool hands each evaluation its own.
pub struct Instance {
    raw: RawInstance,
    policy: Arc<Policy>,
    data_addr: i32,
    /// First free heap address after the data; each evaluation starts its heap here.
    data_heap: i32,
    /// Set when an evaluation trapped: the instance's state is unknown and it must not be reused.
    poisoned: bool,
}

/// Output format of an evaluation's result set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON: sets become arrays.
    Json,
    /// Rego value syntax: sets are kept.
    Rego,
}

impl Instance {
    pub fn new(policy: &Arc<Policy>) -> Result<Instance> {
        let mut raw = policy.raw_instance()?;
        // Initialise the allocator so the heap pointer is meaningful.
        raw.callbacks
            .malloc
            .call(&mut raw.store, 0)
            .map_err(|e| raw.fault(e))?;
        let data_addr = if policy.data_json.is_empty() {
            0
        } else {
            let (addr, len) = raw.alloc_bytes(&policy.data_json)?;
            let parsed = raw
                .json_parse
                .call(&mut raw.store, (addr, len))
                .map_err(|e| raw.fault(e))?;
            if parsed == 0 {
                return Err(Error::Bundle(
                    "the policy could not parse the bundle's data document".into(),
                ));
            }
            parsed
        };
        if let Ok(stash) = raw.func::<(), ()>("opa_heap_blocks_stash") {
            stash.call(&mut raw.store, ()).map_err(|e| raw.fault(e))?;
        }
        let data_heap = raw
            .heap_ptr_get
            .call(&mut raw.store, ())
            .map_err(|e| raw.fault(e))?;
        Ok(Instance {
            raw,
            policy: policy.clone(),
            data_addr,
            data_heap,
            poisoned: false,
        })
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Whether an earlier evaluation trapped; a poisoned instance is dropped, never reused.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Evaluates entrypoint `entrypoint` on raw `input` (JSON or Rego value text; `None` for no
    /// input) and returns the result set text: `[{"result": ...}]`, or `[]` when undefined.
    pub fn eval(
        &mut self,
        entrypoint: i32,
        input: Option<&[u8]>,
        format: Format,
    ) -> Result<Vec<u8>> {
        if self.poisoned {
            return Err(Error::Internal(
                "instance was poisoned by an earlier trap".into(),
            ));
        }
        let r = self.eval_inner(entrypoint, input, format);
        if let Err(e) = &r {
            if !matches!(e, Error::InvalidInput(_)) {
                self.poisoned = true;
            }
        }
        r
    }

    fn eval_inner(
        &mut self,
        entrypoint: i32,
        input: Option<&[u8]>,
        format: Format,
    ) -> Result<Vec<u8>> {
        let limits = self.policy.limits;
        {
            let state = self.raw.store.data_mut();
            state.abort = None;
            state.limiter.hit = false;
            state.memo.clear();
            state.ctx = Context::now();
        }
        if limits.timeout_ms > 0 {
            self.raw
                .store
                .set_epoch_deadline(limits.timeout_ms.saturating_add(1));
        }

        let result = match self.raw.eval_fast.clone() {
            Some(eval) => {
                let (input_addr, input_len) = match input {
                    Some(bytes) => {
                        self.write_at_heap(bytes)?;
                        let len = i32::try_from(bytes.len())
                            .map_err(|_| Error::InvalidInput("input larger than 2 GiB".into()))?;
                        (self.data_heap, len)
                    }
                    None => (0, 0),
                };
                let heap = self
                    .data_heap
                    .checked_add(input_len)
                    .ok_or_else(|| Error::InvalidInput("input too large".into()))?;
                let fmt = i32::from(format == Format::Rego);
                eval.call(
                    &mut self.raw.store,
                    (
                        0,
                        entrypoint,
                        self.data_addr,
                        input_addr,
                        input_len,
                        heap,
                        fmt,
                    ),
                )
                .map_err(|e| self.raw.fault(e))
            }
            None => self.eval_context_api(entrypoint, input, format),
        };
        let addr = result.map_err(|e| match e {
            Error::Timeout(_) => Error::Timeout(limits.timeout_ms),
            other => other,
        })?;
        read_cstr(&self.raw.memory, &self.raw.store, addr)
    }

    /// The pre-1.2 sequence: reset the heap, parse input, build a context, eval, dump.
    fn eval_context_api(
        &mut self,
        entrypoint: i32,
        input: Option<&[u8]>,
        format: Format,
    ) -> Result<i32> {
        let raw = &mut self.raw;
        raw.heap_ptr_set
            .call(&mut raw.store, self.data_heap)
            .map_err(|e| raw.fault(e))?;
        let input_addr = match input {
            Some(bytes) => {
                let (addr, len) = raw.alloc_bytes(bytes)?;
                let parse = raw.callbacks.value_parse.clone();
                let v = parse
                    .call(&mut raw.store, (addr, len))
                    .map_err(|e| raw.fault(e))?;
                if v == 0 {
                    return Err(Error::InvalidInput(
                        "the policy could not parse the input".into(),
                    ));
                }
                Some(v)
            }
            None => None,
        };
        let ctx_new = raw.func::<(), i32>("opa_eval_ctx_new")?;
        let set_input = raw.func::<(i32, i32), ()>("opa_eval_ctx_set_input")?;
        let set_data = raw.func::<(i32, i32), ()>("opa_eval_ctx_set_data")?;
        let set_ep = raw.func::<(i32, i32), ()>("opa_eval_ctx_set_entrypoint")?;
        let eval = raw.func::<i32, i32>("eval")?;
        let get_result = raw.func::<i32, i32>("opa_eval_ctx_get_result")?;
        let ctx = ctx_new.call(&mut raw.store, ()).map_err(|e| raw.fault(e))?;
        if let Some(addr) = input_addr {
            set_input
                .call(&mut raw.store, (ctx, addr))
                .map_err(|e| raw.fault(e))?;
        }
        set_data
            .call(&mut raw.store, (ctx, self.data_addr))
            .map_err(|e| raw.fault(e))?;
        set_ep
            .call(&mut raw.store, (ctx, entrypoint))
            .map_err(|e| raw.fault(e))?;
        eval.call(&mut raw.store, ctx).map_err(|e| raw.fault(e))?;
        let result = get_result
            .call(&mut raw.store, ctx)
            .map_err(|e| raw.fault(e))?;
        let dump = match format {
            Format::Json => raw.json_dump.clone(),
            Format::Rego => raw.callbacks.value_dump.clone(),
        };
        dump.call(&mut raw.store, result).map_err(|e| raw.fault(e))
    }

    /// Writes the input at the start of the evaluation heap, growing memory if needed.
    fn write_at_heap(&mut self, bytes: &[u8]) -> Result<()> {
        let start = u64::try_from(self.data_heap)
            .map_err(|_| Error::Internal("negative heap pointer".into()))?;
        // Leave room past the input so the allocator's first growth check has slack.
        let need = start + bytes.len() as u64 + PAGE;
        let have = self.raw.memory.data_size(&self.raw.store) as u64;
        if need > have {
            let pages = (need - have).div_ceil(PAGE);
            if self.raw.memory.grow(&mut self.raw.store, pages).is_err() {
                return Err(Error::MemoryLimit(self.policy.limits.memory_bytes));
            }
        }
        self.raw
            .memory
            .write(
                &mut self.raw.store,
                usize::try_from(start).unwrap_or(usize::MAX),
                bytes,
            )
            .map_err(|e| Error::Internal(format!("cannot write input: {e}")))
    }

    /// Bytes of linear memory this instance holds now.
    pub fn memory_bytes(&self) -> usize {
        self.raw.memory.data_size(&self.raw.store)
    }

    /// Forces the context-API path (pre-1.2 modules), so tests can cover it with current modules.
    pub fn use_context_api(&mut self) {
        self.raw.eval_fast = None;
    }
}
