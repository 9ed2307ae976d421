//! A plain loop of evaluations for profilers (`valgrind --tool=callgrind`, `perf record`), which
//! need a process that does nothing else: `profile <small|medium> <acgs|opa-wasm> <iterations>`.

use anyhow::{anyhow, bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [case, host, iters] = args.as_slice() else {
        bail!("usage: profile <small|medium> <acgs|opa-wasm> <iterations>");
    };
    let iters: u64 = iters.parse()?;
    let cases = acgs_bench::cases()?;
    let case = cases.iter().find(|c| c.name == case).ok_or_else(|| anyhow!("unknown case {case}"))?;
    match host.as_str() {
        "acgs" => {
            let acgs = acgs_bench::Acgs::load(case)?;
            for _ in 0..iters {
                std::hint::black_box(acgs.eval(std::hint::black_box(&case.input))?);
            }
        }
        #[cfg(feature = "peer")]
        "opa-wasm" => {
            let module = acgs_bench::OpaWasmModule::load(case)?;
            let mut inst = module.instance()?;
            let raw: &serde_json::value::RawValue = serde_json::from_slice(&case.input)?;
            for _ in 0..iters {
                std::hint::black_box(inst.eval(std::hint::black_box(raw))?);
            }
        }
        other => bail!("unknown host {other}"),
    }
    Ok(())
}
