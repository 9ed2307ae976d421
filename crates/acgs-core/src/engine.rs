//! The policy engine: a loaded bundle, a pool of Wasm instances, and atomic reloads.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::bundle::Bundle;
use crate::cache::{CacheKey, CacheStats, Count, DecisionCache, KeyInput};
use crate::canon::{Json, ParseError};
use crate::error::{Error, Result};
use crate::fastpath::FastPath;
use crate::native::Native;
use crate::trusted::admitted_bytes;
use crate::value::Value;
use crate::wasm::{Format, Instance, Limits, Policy};

mod plan;
use plan::PlanEvaluator;

/// Where a constitution bundle keeps its declarations, and the entrypoint of its decisions.
const CONSTITUTION_PATH: [&str; 2] = ["acgs", "constitution"];
pub const DECISION_ENTRYPOINT: &str = "acgs/main/decision";
/// `allow := decision.allow`, which the native evaluator answers too.
pub const ALLOW_ENTRYPOINT: &str = "acgs/main/allow";

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    pub limits: Limits,
    /// Idle instances kept per bundle. Busy instances are not capped: each concurrent caller
    /// gets its own, so throughput scales with threads.
    pub max_idle: usize,
    /// L1 decision cache entries; 0 turns the cache off.
    pub cache_capacity: usize,
    /// How long a cached decision stays valid; `None` keeps it until evicted or reloaded.
    pub cache_ttl: Option<Duration>,
    /// Serve constitution decisions from the fast path where its data allows.
    pub fast_path: bool,
    /// Evaluate the shipped constitution's decisions natively (see [`crate::native`]) instead
    /// of in its Wasm, when the bundle carries its exact rules and the load-time check agrees.
    pub native: bool,
    /// What evaluates what the steps before it do not answer: the bundle's Wasm or its plan.
    pub evaluator: Evaluator,
}

/// The evaluator of full evaluations (after the cache, the fast path and the native evaluator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Evaluator {
    /// The bundle's Wasm module.
    Wasm,
    /// The bundle's plan (`/plan.json`, see [`acgs_plan`]); a bundle without a usable plan is
    /// refused at load, with the reason.
    Plan,
    /// The plan when the bundle carries one the evaluator accepts, else the Wasm (and
    /// [`Loaded::plan_error`] says why). The default: the plan evaluates the shipped
    /// constitution's entrypoints in about half the Wasm's time.
    #[default]
    Auto,
}

impl Evaluator {
    pub fn as_str(self) -> &'static str {
        match self {
            Evaluator::Wasm => "wasm",
            Evaluator::Plan => "plan",
            Evaluator::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Evaluator {
    type Err = Error;

    fn from_str(s: &str) -> Result<Evaluator> {
        match s {
            "wasm" => Ok(Evaluator::Wasm),
            "plan" => Ok(Evaluator::Plan),
            "auto" => Ok(Evaluator::Auto),
            other => Err(Error::InvalidInput(format!(
                "evaluator must be \"wasm\", \"plan\" or \"auto\", not {other:?}"
            ))),
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        EngineOptions {
            limits: Limits::default(),
            max_idle: cores.max(2) * 2,
            cache_capacity: 10_000,
            cache_ttl: Some(Duration::from_secs(300)),
            fast_path: true,
            native: true,
            evaluator: Evaluator::Auto,
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
    /// No builtin the module imports is non-deterministic, so its results may be cached.
    pub cacheable: bool,
    /// The constitution's declared hash (`data.acgs.constitution.constitutional_hash`).
    pub constitutional_hash: Option<String>,
    /// The id of `acgs/main/decision`, when the bundle has it.
    pub decision_entrypoint: Option<i32>,
    /// The id of `acgs/main/allow`, when the bundle has it.
    pub allow_entrypoint: Option<i32>,
    pub fast_path: Option<FastPath>,
    /// Why the constitution's fast-path spec could not be used, if it could not.
    pub fast_path_error: Option<String>,
    /// The native evaluator of `acgs/main/decision`, when it applies to this bundle.
    pub native: Option<Native>,
    /// Why the native evaluator is not used (`None` when it is, or was not asked for).
    pub native_error: Option<String>,
    /// The bundle's plan, when the options ask for it and it loaded: full evaluations run it
    /// instead of the Wasm.
    plan: Option<PlanEvaluator>,
    /// Why the plan is not used under [`Evaluator::Auto`] (`None` when it is, or was not asked
    /// for).
    pub plan_error: Option<String>,
}

impl Loaded {
    fn new(bundle: Bundle, options: EngineOptions) -> Result<Loaded> {
        let (policy, mut first) = Policy::compile(&bundle.wasm, &bundle.data, options.limits)?;
        let (plan, plan_error) = match options.evaluator {
            Evaluator::Wasm => (None, None),
            asked => {
                // The data document exactly as the Wasm reads it.
                let data_json =
                    serde_json::to_vec(&bundle.data).map_err(|e| Error::Internal(e.to_string()))?;
                let loaded = PlanEvaluator::load(
                    bundle.plan_json(),
                    policy.entrypoints(),
                    &data_json,
                    options.limits,
                );
                match loaded {
                    Ok(p) => (Some(p), None),
                    Err(why) if asked == Evaluator::Plan => {
                        return Err(Error::Bundle(format!(
                            "the plan evaluator cannot run this bundle: {why}"
                        )))
                    }
                    Err(why) => (None, Some(why)),
                }
            }
        };
        let default_entrypoint = bundle
            .manifest
            .wasm
            .first()
            .and_then(|w| policy.entrypoints().get(&w.entrypoint).copied())
            .unwrap_or(0);
        // A module that imports a clock, random or network builtin gives different answers to
        // the same input, so none of its entrypoints is cached (the module, not the
        // entrypoint, declares its imports).
        let cacheable =
            crate::nondeterministic::nondeterministic_in(policy.builtin_names()).is_empty();
        let constitution = CONSTITUTION_PATH
            .iter()
            .try_fold(&bundle.data, |d, k| d.get(k));
        let constitutional_hash = constitution
            .and_then(|c| c.get("constitutional_hash"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let decision_entrypoint = policy.entrypoints().get(DECISION_ENTRYPOINT).copied();
        let allow_entrypoint = policy.entrypoints().get(ALLOW_ENTRYPOINT).copied();
        let spec = constitution.and_then(|c| c.get("fast_path"));
        let (fast_path, fast_path_error) = match (spec, decision_entrypoint) {
            (Some(spec), Some(ep)) if options.fast_path && cacheable => {
                let built = FastPath::build(spec, |input| wasm_decision(&mut first, ep, input));
                if first.is_poisoned() {
                    first = Instance::new(&policy)?;
                }
                match built {
                    Ok(fp) => (Some(fp), None),
                    Err(e) => (None, Some(e.0)),
                }
            }
            (Some(_), None) => (
                None,
                Some(format!(
                    "the bundle has no {DECISION_ENTRYPOINT} entrypoint"
                )),
            ),
            (Some(_), Some(_)) if !cacheable => (
                None,
                Some("the policy calls non-deterministic builtins".into()),
            ),
            _ => (None, None),
        };
        let (native, native_error) = match (constitution, decision_entrypoint) {
            (Some(c), Some(ep)) if options.native => {
                let checked = Native::for_bundle(c, &bundle.rego_digests, |input| {
                    wasm_decision(&mut first, ep, input)
                });
                if first.is_poisoned() {
                    first = Instance::new(&policy)?;
                }
                match checked {
                    Ok(n) => (Some(n), None),
                    Err(e) => (None, Some(e.0)),
                }
            }
            _ => (None, None),
        };
        Ok(Loaded {
            bundle_digest: bundle.digest,
            revision: bundle.manifest.revision,
            policy,
            idle: Mutex::new(vec![first]),
            max_idle: options.max_idle.max(1),
            default_entrypoint,
            data: bundle.data,
            cacheable,
            constitutional_hash,
            decision_entrypoint,
            allow_entrypoint,
            fast_path,
            fast_path_error,
            native,
            native_error,
            plan,
            plan_error,
        })
    }

    /// Which evaluator runs full evaluations of this bundle.
    pub fn evaluator(&self) -> Evaluator {
        if self.plan.is_some() {
            Evaluator::Plan
        } else {
            Evaluator::Wasm
        }
    }

    /// The steps the plan's load-time rewrites took and whether their budget cut them short
    /// (the bodies not reached run as written), when the plan evaluates.
    pub fn plan_rewrites(&self) -> Option<(u64, bool)> {
        self.plan.as_ref().map(PlanEvaluator::rewrites)
    }

    /// A full evaluation: the plan when loaded, else a Wasm instance.
    fn run(&self, ep: i32, input: Option<&[u8]>, format: Format) -> Result<Vec<u8>> {
        match &self.plan {
            Some(p) => p.eval(ep, input, format),
            None => self.with_instance(|inst| inst.eval(ep, input, format)),
        }
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
    pub(crate) current: ArcSwap<Loaded>,
    options: EngineOptions,
    pub(crate) cache: Option<DecisionCache>,
    fast_path_hits: AtomicU64,
    native_decisions: AtomicU64,
}

/// How far the engine trusts input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCheck {
    /// Check the bytes are one JSON value (or Rego value text) before the policy sees them.
    Validate,
    /// The bytes come from ACGS's own serializer and are known to be valid JSON.
    Trusted,
}

/// L1 cache and fast-path counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub cache: CacheStats,
    /// Decisions answered by the fast path.
    pub fast_path: u64,
    /// Decisions evaluated by the native evaluator (the rest of the misses ran the Wasm).
    pub native: u64,
}

impl Engine {
    pub fn new(bundle: Bundle, options: EngineOptions) -> Result<Engine> {
        let loaded = Loaded::new(bundle, options)?;
        let cache = (options.cache_capacity > 0)
            .then(|| DecisionCache::new(options.cache_capacity, options.cache_ttl));
        Ok(Engine {
            current: ArcSwap::from_pointee(loaded),
            options,
            cache,
            fast_path_hits: AtomicU64::new(0),
            native_decisions: AtomicU64::new(0),
        })
    }

    /// Swaps in a new bundle. Evaluations in flight finish on the bundle they started with;
    /// if the new bundle fails to load, the old one stays.
    pub fn reload(&self, bundle: Bundle) -> Result<()> {
        let loaded = Loaded::new(bundle, self.options)?;
        self.current.store(Arc::new(loaded));
        // Keys carry the bundle digest, so old entries could never be served; dropping them
        // frees the room at once.
        if let Some(c) = &self.cache {
            c.clear();
        }
        Ok(())
    }

    /// The bundle in use now.
    pub fn loaded(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            cache: self
                .cache
                .as_ref()
                .map(DecisionCache::stats)
                .unwrap_or_default(),
            fast_path: self.fast_path_hits.load(Ordering::Relaxed),
            native: self.native_decisions.load(Ordering::Relaxed),
        }
    }

    /// The L1 key of an evaluation, for callers that keep a second-level cache (JSON format).
    pub fn cache_key(&self, entrypoint: Option<&str>, input: Option<&[u8]>) -> Result<CacheKey> {
        let loaded = self.current.load();
        let ep = loaded.entrypoint_id(entrypoint)?;
        let parsed = input.map(Json::parse);
        Ok(key_for(
            &loaded.bundle_digest,
            ep,
            Format::Json,
            input,
            parsed.as_ref().map(Result::as_ref),
        ))
    }

    /// Stores a result set under `key` (from [`Engine::cache_key`]); a no-op with the cache
    /// off or for a bundle whose results must not be cached.
    pub fn cache_put(&self, key: CacheKey, result_set: &[u8]) {
        if let Some(c) = &self.cache {
            if self.current.load().cacheable {
                c.put(key, Arc::from(result_set));
            }
        }
    }

    /// Evaluates one input; returns the result set text (`[{"result": ...}]` or `[]`).
    pub fn evaluate(
        &self,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
        check: InputCheck,
        format: Format,
    ) -> Result<Vec<u8>> {
        self.evaluate_counted(entrypoint, input, check, format, Count::All)
    }

    /// [`Engine::evaluate`] after [`Engine::evaluate_cached`] found nothing for this input: the
    /// probe counted the request's L1 look-up (a miss), so this one is not counted again.
    pub fn evaluate_probed(
        &self,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
        check: InputCheck,
        format: Format,
    ) -> Result<Vec<u8>> {
        self.evaluate_counted(entrypoint, input, check, format, Count::Nothing)
    }

    fn evaluate_counted(
        &self,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
        check: InputCheck,
        format: Format,
        count: Count,
    ) -> Result<Vec<u8>> {
        let loaded = self.current.load();
        let ep = loaded.entrypoint_id(entrypoint)?;
        let parsed = self
            .wants_parse(&loaded)
            .then(|| input.map(Json::parse))
            .flatten();
        self.evaluate_on(
            &loaded,
            ep,
            Input::Bytes(input),
            parsed.as_ref().map(Result::as_ref),
            check,
            format,
            true,
            count,
        )
        .map(|found| found.map_or_else(Vec::new, |(out, _)| out))
    }

    /// Answers from the L1 cache or the fast path only (JSON format); `None` when a full
    /// evaluation is needed.
    pub fn evaluate_cached(
        &self,
        entrypoint: Option<&str>,
        input: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let loaded = self.current.load();
        let ep = loaded.entrypoint_id(entrypoint)?;
        let parsed = self
            .wants_parse(&loaded)
            .then(|| input.map(Json::parse))
            .flatten();
        self.evaluate_on(
            &loaded,
            ep,
            Input::Bytes(input),
            parsed.as_ref().map(Result::as_ref),
            InputCheck::Validate,
            Format::Json,
            false,
            Count::All,
        )
        .map(|found| found.map(|(out, _)| out))
    }

    /// Whether the pipeline needs the input parsed (for a cache key or the fast path).
    pub(crate) fn wants_parse(&self, loaded: &Loaded) -> bool {
        (self.cache.is_some() && loaded.cacheable)
            || loaded.fast_path.is_some()
            || loaded.native.is_some()
    }

    /// The evaluation pipeline on one loaded bundle: L1 cache, fast path, full evaluation
    /// (only when `run`; otherwise `None` when neither cheap step answers). `parsed` is the
    /// input parsed when [`Engine::wants_parse`] says so; `count`, how the L1 look-up counts in
    /// the cache's statistics. Also says how the answer was found.
    #[allow(clippy::too_many_arguments)] // one internal call path; a struct would only rename them
    pub(crate) fn evaluate_on(
        &self,
        loaded: &Loaded,
        ep: i32,
        input: Input<'_>,
        parsed: Option<std::result::Result<&Json<'_>, &ParseError>>,
        check: InputCheck,
        format: Format,
        run: bool,
        count: Count,
    ) -> Result<Option<(Vec<u8>, Source)>> {
        let cache = self.cache.as_ref().filter(|_| loaded.cacheable);
        if cache.is_none() && loaded.fast_path.is_none() && loaded.native.is_none() {
            if check == InputCheck::Validate {
                if let Some(bytes) = input.sent() {
                    validate_input(bytes)?;
                }
            }
            if !run {
                return Ok(None);
            }
            let bytes = input.for_wasm();
            return loaded
                .run(ep, bytes.as_deref(), format)
                .map(|o| Some((o, Source::Evaluated)));
        }
        if check == InputCheck::Validate {
            if let (Some(bytes), None | Some(Err(_))) = (input.sent(), parsed) {
                // Not plain JSON: Rego value text is still a valid input.
                validate_input(bytes)?;
            }
        }
        let key = cache.map(|_| key_for(&loaded.bundle_digest, ep, format, input.sent(), parsed));
        if let (Some(c), Some(k)) = (cache, key) {
            if let Some((hit, expires)) = c.get_entry(k, count) {
                return Ok(Some((hit.to_vec(), Source::Cache(expires))));
            }
        }
        if let (Some(fp), Some(Ok(doc)), Format::Json) = (&loaded.fast_path, parsed, format) {
            if Some(ep) == loaded.decision_entrypoint {
                if let Some(decision) = fp.lookup(doc) {
                    self.fast_path_hits.fetch_add(1, Ordering::Relaxed);
                    let mut out = Vec::with_capacity(decision.len() + 14);
                    out.extend_from_slice(b"[{\"result\":");
                    out.extend_from_slice(decision);
                    out.extend_from_slice(b"}]");
                    return Ok(Some((out, Source::FastPath)));
                }
            }
        }
        if !run {
            return Ok(None);
        }
        let native = match (&loaded.native, parsed, format) {
            (Some(n), Some(Ok(doc)), Format::Json) if Some(ep) == loaded.decision_entrypoint => {
                n.decide(doc).map(|decision| {
                    self.native_decisions.fetch_add(1, Ordering::Relaxed);
                    let mut out = Vec::with_capacity(decision.len() + 14);
                    out.extend_from_slice(b"[{\"result\":");
                    out.extend_from_slice(&decision);
                    out.extend_from_slice(b"}]");
                    out
                })
            }
            (Some(n), Some(Ok(doc)), Format::Json) if Some(ep) == loaded.allow_entrypoint => {
                // The native decision object always starts with its allow flag.
                n.decide(doc).map(|decision| {
                    self.native_decisions.fetch_add(1, Ordering::Relaxed);
                    if decision.starts_with(b"{\"allow\":true") {
                        b"[{\"result\":true}]".to_vec()
                    } else {
                        b"[{\"result\":false}]".to_vec()
                    }
                })
            }
            _ => None,
        };
        let out = match native {
            Some(out) => out,
            None => {
                let bytes = input.for_wasm();
                loaded.run(ep, bytes.as_deref(), format)?
            }
        };
        if let (Some(c), Some(k)) = (cache, key) {
            c.put(k, Arc::from(out.as_slice()));
        }
        Ok(Some((out, Source::Evaluated)))
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
        let parse = self.wants_parse(&loaded);
        let run = |input: &Vec<u8>| -> Result<Vec<u8>> {
            let parsed = parse.then(|| Json::parse(input));
            self.evaluate_on(
                &loaded,
                ep,
                Input::Bytes(Some(input)),
                parsed.as_ref().map(Result::as_ref),
                check,
                format,
                true,
                Count::All,
            )
            .map(|found| found.map_or_else(Vec::new, |(out, _)| out))
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

/// The input of one evaluation, as far as bytes go (the pipeline's other steps read the parsed
/// tree).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// The caller's bytes, or no input.
    Bytes(Option<&'a [u8]>),
    /// A decision request `decide` parsed and admitted ([`crate::trusted::admit_tree`]): the
    /// bytes as sent, the admitted tree and whether admission changed it. The tree is written
    /// out only if the Wasm must read it.
    Admitted {
        sent: &'a [u8],
        doc: &'a Json<'a>,
        changed: bool,
    },
}

impl<'a> Input<'a> {
    /// The bytes as the caller sent them.
    fn sent(self) -> Option<&'a [u8]> {
        match self {
            Input::Bytes(b) => b,
            Input::Admitted { sent, .. } => Some(sent),
        }
    }

    /// The bytes the Wasm reads: an admitted request as admission left it.
    fn for_wasm(self) -> Option<Cow<'a, [u8]>> {
        match self {
            Input::Bytes(b) => b.map(Cow::Borrowed),
            Input::Admitted { sent, doc, changed } => Some(admitted_bytes(sent, doc, changed)),
        }
    }
}

/// How the pipeline found an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// From the L1 cache; the entry's expiry, so an alias can share it.
    Cache(Option<Instant>),
    FastPath,
    Evaluated,
}

fn key_for(
    digest: &str,
    ep: i32,
    format: Format,
    input: Option<&[u8]>,
    parsed: Option<std::result::Result<&Json<'_>, &ParseError>>,
) -> CacheKey {
    let fmt = u8::from(format == Format::Rego);
    let key_input = match (input, parsed) {
        (Some(_), Some(Ok(doc))) => KeyInput::Json(doc),
        (Some(bytes), _) => KeyInput::Raw(bytes),
        (None, _) => KeyInput::None,
    };
    CacheKey::new(digest, ep, fmt, key_input)
}

/// The decision the bundle's Wasm gives for `input` (used at load to check the fast path and
/// the native evaluator against it).
fn wasm_decision(inst: &mut Instance, ep: i32, input: &serde_json::Value) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(input).ok()?;
    let set = inst.eval(ep, Some(&bytes), Format::Json).ok()?;
    result_value(&set).map(<[u8]>::to_vec)
}

/// The `result` of a one-entry result set as OPA's Wasm writes it (`[{"result":X}]`).
pub(crate) fn result_value(set: &[u8]) -> Option<&[u8]> {
    set.strip_prefix(b"[{\"result\":")?.strip_suffix(b"}]")
}
