//! The peer comparison (bench/peers.py): the same policies and inputs through ACGS's OPA Wasm
//! host, ACGS's plan evaluator (`acgs-plan`) and regorus (its interpreter and its RVM), each
//! called as its docs show, JSON text in and JSON text out.
//!
//! Policies: the shipped constitution (three entrypoints, inputs from the seeds of
//! `crates/acgs-plan/tests/corpus/`), and the RBAC and API-gateway policies of
//! `bench/policies/{rbac,gateway}` (inputs from their `inputs.jsonl`). ACGS runs the committed
//! bundles (`bundles/constitution.tar.gz`, `bench/bundles/*.tar.gz`), which carry both
//! `policy.wasm` and `plan.json`; regorus runs the Rego sources those bundles were built from,
//! with the bundle's own data document.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// Inputs per constitution entrypoint taken from the corpus (the first lines: the seeds).
pub const CORPUS_INPUTS: usize = 8;

/// One policy and entrypoint with its inputs.
pub struct PeerCase {
    /// `constitution-main`, `rbac`, ...: the benchmark's name in the results.
    pub name: String,
    /// `acgs/main/decision`
    pub entrypoint: String,
    pub bundle: PathBuf,
    /// Rego sources for the engines that compile Rego themselves, tests left out.
    pub sources: Vec<PathBuf>,
    /// Compact JSON inputs, evaluated in turn.
    pub inputs: Vec<String>,
}

impl PeerCase {
    /// `data.acgs.main.decision`
    pub fn query(&self) -> String {
        format!("data.{}", self.entrypoint.replace('/', "."))
    }
}

/// The repository's root (this crate lives in `bench/rust`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rego_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".rego") && !name.ends_with("_test.rego")
        })
        .collect();
    out.sort();
    Ok(out)
}

fn compact_lines(path: &Path, take: usize) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(take)
        .map(|l| {
            Ok(serde_json::to_string(&serde_json::from_str::<
                serde_json::Value,
            >(l)?)?)
        })
        .collect()
}

/// Every case, or those whose name is in `only` (comma-separated) when it is set.
pub fn peer_cases(only: Option<&str>) -> Result<Vec<PeerCase>> {
    let root = repo_root();
    let constitution = rego_files(&root.join("policies/acgs"))?;
    let corpus = root.join("crates/acgs-plan/tests/corpus");
    let mut cases = Vec::new();
    for part in ["main", "evolution", "sandbox"] {
        let entrypoint = format!("acgs/{part}/decision");
        cases.push(PeerCase {
            name: format!("constitution-{part}"),
            inputs: compact_lines(
                &corpus.join(format!("acgs_{part}_decision.jsonl")),
                CORPUS_INPUTS,
            )?,
            entrypoint,
            bundle: root.join("bundles/constitution.tar.gz"),
            sources: constitution.clone(),
        });
    }
    for name in ["rbac", "gateway"] {
        let dir = root.join("bench/policies").join(name);
        cases.push(PeerCase {
            name: name.to_string(),
            entrypoint: format!("bench/{name}/decision"),
            bundle: root.join("bench/bundles").join(format!("{name}.tar.gz")),
            sources: rego_files(&dir)?,
            inputs: compact_lines(&dir.join("inputs.jsonl"), usize::MAX)?,
        });
    }
    if let Some(only) = only.filter(|o| !o.is_empty()) {
        let wanted: Vec<&str> = only.split(',').collect();
        cases.retain(|c| wanted.contains(&c.name.as_str()));
    }
    Ok(cases)
}

/// The engines compared, in the order of the results.
pub const ENGINES: [&str; 4] = [
    "acgs-wasm",
    "acgs-plan",
    "regorus-interpreter",
    "regorus-rvm",
];

/// One engine loaded with one case's policy and data: `eval` takes an input as JSON text and
/// returns the entrypoint's value as JSON text (`None` when undefined).
pub enum Evaluator {
    AcgsWasm {
        instance: acgs_core::wasm::Instance,
        id: i32,
    },
    AcgsPlan {
        plan: acgs_plan::Plan,
        entrypoint: usize,
        data: acgs_plan::Val,
    },
    RegorusInterpreter {
        engine: regorus::Engine,
        rule: String,
    },
    RegorusRvm {
        vm: Box<regorus::rvm::vm::RegoVM>,
    },
}

impl Evaluator {
    /// Loads `engine` (one of [`ENGINES`]) for `case`. An error says why the engine cannot run
    /// this policy (a builtin it lacks, a parse error): that is a result of the comparison.
    pub fn load(engine: &str, case: &PeerCase) -> Result<Evaluator> {
        let bundle = acgs_core::Bundle::from_path(&case.bundle).map_err(|e| anyhow!("{e}"))?;
        match engine {
            "acgs-wasm" => {
                let (policy, instance) = acgs_core::wasm::Policy::compile(
                    &bundle.wasm,
                    &bundle.data,
                    acgs_core::wasm::Limits::default(),
                )
                .map_err(|e| anyhow!("{e}"))?;
                let id = *policy
                    .entrypoints()
                    .get(&case.entrypoint)
                    .ok_or_else(|| anyhow!("no entrypoint {} in the Wasm", case.entrypoint))?;
                Ok(Evaluator::AcgsWasm { instance, id })
            }
            "acgs-plan" => {
                let json = bundle
                    .plan_json()
                    .ok_or_else(|| anyhow!("the bundle carries no plan.json"))?;
                let plan = acgs_plan::Plan::from_json(json).map_err(|e| anyhow!("{e}"))?;
                let entrypoint = plan
                    .entrypoint(&case.entrypoint)
                    .ok_or_else(|| anyhow!("no entrypoint {} in the plan", case.entrypoint))?;
                let data = acgs_plan::Val::parse(serde_json::to_string(&bundle.data)?.as_bytes())
                    .map_err(|e| anyhow!("data: {e}"))?;
                Ok(Evaluator::AcgsPlan {
                    plan,
                    entrypoint,
                    data,
                })
            }
            "regorus-interpreter" => {
                let mut engine = regorus_engine(case, &bundle.data)?;
                // regorus 0.14.1 has no io.jwt.decode: the gateway policy gets it as a host
                // extension, regorus's documented way to add a builtin.
                engine.add_extension("io.jwt.decode".to_string(), 1, Box::new(jwt_decode))?;
                Ok(Evaluator::RegorusInterpreter {
                    engine,
                    rule: case.query(),
                })
            }
            "regorus-rvm" => {
                let mut engine = regorus_engine(case, &bundle.data)?;
                let query = case.query();
                let compiled = engine.compile_with_entrypoint(&query.as_str().into())?;
                let program = regorus::languages::rego::compiler::Compiler::compile_from_policy(
                    &compiled,
                    &[query.as_str()],
                )?;
                let mut vm = Box::new(regorus::rvm::vm::RegoVM::new());
                vm.load_program(program);
                vm.set_data(regorus::Value::from_json_str(&serde_json::to_string(
                    &bundle.data,
                )?)?)?;
                Ok(Evaluator::RegorusRvm { vm })
            }
            other => bail!("unknown engine {other}"),
        }
    }

    /// One evaluation, JSON text in, the entrypoint's value as JSON text out.
    pub fn eval(&mut self, input: &str) -> Result<Option<String>> {
        match self {
            Evaluator::AcgsWasm { instance, id } => {
                let out = instance
                    .eval(*id, Some(input.as_bytes()), acgs_core::wasm::Format::Json)
                    .map_err(|e| anyhow!("{e}"))?;
                Ok(Some(String::from_utf8(out)?))
            }
            Evaluator::AcgsPlan {
                plan,
                entrypoint,
                data,
            } => {
                let input =
                    acgs_plan::Val::parse(input.as_bytes()).map_err(|e| anyhow!("input: {e}"))?;
                let value = plan
                    .eval_value(
                        *entrypoint,
                        Some(&input),
                        data,
                        acgs_plan::Limits::default(),
                    )
                    .map_err(|e| anyhow!("{e}"))?;
                Ok(value.map(|v| v.to_json()))
            }
            Evaluator::RegorusInterpreter { engine, rule } => {
                engine.set_input(regorus::Value::from_json_str(input)?);
                let value = engine.eval_rule(rule.clone())?;
                regorus_json(&value)
            }
            Evaluator::RegorusRvm { vm } => {
                vm.set_input(regorus::Value::from_json_str(input)?);
                let value = vm.execute()?;
                regorus_json(&value)
            }
        }
    }

    /// The entrypoint's value, parsed, for comparisons between engines (ACGS's Wasm returns
    /// the result set, `[{"result": value}]`, which is unwrapped here).
    pub fn value(&mut self, input: &str) -> Result<Option<serde_json::Value>> {
        let Some(text) = self.eval(input)? else {
            return Ok(None);
        };
        let value: serde_json::Value = serde_json::from_str(&text)?;
        if let Evaluator::AcgsWasm { .. } = self {
            return Ok(value.get(0).and_then(|r| r.get("result")).cloned());
        }
        Ok(Some(value))
    }
}

fn regorus_engine(case: &PeerCase, data: &serde_json::Value) -> Result<regorus::Engine> {
    let mut engine = regorus::Engine::new();
    for path in &case.sources {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .strip_prefix(repo_root())
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        engine.add_policy(name, text)?;
    }
    engine.add_data(regorus::Value::from_json_str(&serde_json::to_string(
        data,
    )?)?)?;
    Ok(engine)
}

fn regorus_json(value: &regorus::Value) -> Result<Option<String>> {
    if *value == regorus::Value::Undefined {
        return Ok(None);
    }
    Ok(Some(value.to_json_str()?))
}

/// `io.jwt.decode(token)` for regorus: `[header, payload, signature as hex]`, as OPA returns it.
fn jwt_decode(args: Vec<regorus::Value>) -> Result<regorus::Value> {
    let token = match args.first() {
        Some(regorus::Value::String(s)) => s.to_string(),
        _ => bail!("io.jwt.decode: operand 1 must be a string"),
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [head, body, sig] = parts.as_slice() else {
        bail!("io.jwt.decode: encoded JWT had no period separators");
    };
    let part = |p: &str| -> Result<regorus::Value> {
        let raw = data_encoding::BASE64URL_NOPAD
            .decode(p.trim_end_matches('=').as_bytes())
            .map_err(|e| anyhow!("io.jwt.decode: {e}"))?;
        regorus::Value::from_json_str(std::str::from_utf8(&raw)?)
    };
    let sig = data_encoding::BASE64URL_NOPAD
        .decode(sig.trim_end_matches('=').as_bytes())
        .map_err(|e| anyhow!("io.jwt.decode: {e}"))?;
    let sig_hex = data_encoding::HEXLOWER.encode(&sig);
    Ok(regorus::Value::from(vec![
        part(head)?,
        part(body)?,
        regorus::Value::from(sig_hex),
    ]))
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID): time slices other processes take
/// on a loaded machine do not count.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
