//! `decide`: the constitution's decision pipeline for one request, as embedded callers and the
//! REST service both see it. It checks the constitutional hash, then answers from the L1 cache,
//! the fast path or a full evaluation of `acgs/main/decision`, and fails closed: any fault in
//! the policy path becomes a deny that names the fault.

use std::cell::Cell;
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::canon::Json;
use crate::engine::{result_value, Engine, InputCheck, Source, DECISION_ENTRYPOINT};
use crate::error::{Error, Result};
use crate::wasm::Format;

/// Keys ACGS adds to the policy's decision object.
const META_KEYS: [&str; 5] = [
    "decision_id",
    "bundle_digest",
    "cache_hit",
    "fast_path",
    "evaluation_time_ms",
];

/// One decision as returned to callers.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The response object: the policy's decision plus `decision_id`, `bundle_digest`,
    /// `cache_hit`, `fast_path` and `evaluation_time_ms` (and `error` after a fault).
    pub body: Vec<u8>,
    pub allow: bool,
    pub decision_id: String,
    pub cache_hit: bool,
    pub fast_path: bool,
    /// The fault that forced a deny: (code, message).
    pub fault: Option<(&'static str, String)>,
}

impl Engine {
    /// Decides one request (a JSON object). Errors only for requests that are themselves bad
    /// (not a JSON object, another constitution's hash); every fault after that is a deny.
    pub fn decide(&self, request: &[u8]) -> Result<Decision> {
        self.decide_inner(request, true)?
            .ok_or_else(|| Error::Internal("decision pipeline returned nothing".into()))
    }

    /// Like [`Engine::decide`] but answers only from the L1 cache or the fast path; `None`
    /// means a full evaluation is needed (callers with a second-level cache look there first).
    pub fn decide_cached(&self, request: &[u8]) -> Result<Option<Decision>> {
        self.decide_inner(request, false)
    }

    /// Decides many requests on up to `threads` threads; results keep the requests' order.
    pub fn decide_many(
        &self,
        requests: &[Vec<u8>],
        threads: usize,
    ) -> Result<Vec<Result<Decision>>> {
        let threads = threads.clamp(1, requests.len().max(1));
        if threads == 1 {
            return Ok(requests.iter().map(|r| self.decide(r)).collect());
        }
        let chunk = requests.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .chunks(chunk)
                .map(|part| s.spawn(|| part.iter().map(|r| self.decide(r)).collect::<Vec<_>>()))
                .collect();
            let mut out = Vec::with_capacity(requests.len());
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part),
                    Err(_) => return Err(Error::Internal("decision thread panicked".into())),
                }
            }
            Ok(out)
        })
    }

    fn decide_inner(&self, request: &[u8], run: bool) -> Result<Option<Decision>> {
        let start = Instant::now();
        let loaded = self.current.load();
        let parsed = Json::parse(request);
        let doc = match &parsed {
            Ok(d @ Json::Obj(_)) => d,
            Ok(_) => {
                return Err(Error::InvalidInput(
                    "a decision request must be a JSON object".into(),
                ))
            }
            Err(e) => return Err(Error::InvalidInput(format!("decision request: {e}"))),
        };
        if let Some(want) = &loaded.constitutional_hash {
            match doc.get("constitutional_hash") {
                Some(Json::Str(got)) if got != want => {
                    return Err(Error::ConstitutionalHashMismatch {
                        expected: want.clone(),
                        got: got.to_string(),
                    })
                }
                Some(Json::Str(_)) | None => {}
                Some(_) => {
                    return Err(Error::InvalidInput(
                        "constitutional_hash must be a string".into(),
                    ))
                }
            }
        }
        let hash = loaded.constitutional_hash.as_deref();
        let meta = |cache_hit: bool, fast_path: bool| Meta {
            digest: &loaded.bundle_digest,
            cache_hit,
            fast_path,
            start,
        };
        let Some(ep) = loaded.decision_entrypoint else {
            let fault = Error::UnknownEntrypoint(DECISION_ENTRYPOINT.into());
            return Ok(Some(deny(hash, &fault, meta(false, false))));
        };
        let found = self.evaluate_on(
            &loaded,
            ep,
            Some(request),
            Some(&parsed),
            InputCheck::Trusted,
            Format::Json,
            run,
        );
        let (set, source) = match found {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e @ Error::InvalidInput(_)) => return Err(e),
            Err(e) => return Ok(Some(deny(hash, &e, meta(false, false)))),
        };
        let m = meta(source == Source::Cache, source == Source::FastPath);
        let Some(value) = result_value(&set) else {
            let fault = Error::Evaluation("the policy returned no decision".into());
            return Ok(Some(deny(hash, &fault, m)));
        };
        let allow = match decision_allow(value) {
            Ok(a) => a,
            Err(why) => return Ok(Some(deny(hash, &Error::Evaluation(why), m))),
        };
        let decision_id = new_decision_id();
        let mut body = Vec::with_capacity(value.len() + 200);
        // `value` is a JSON object (checked above): reopen it to append ACGS's keys.
        let inner = value
            .strip_suffix(b"}")
            .unwrap_or(value)
            .strip_prefix(b"{")
            .unwrap_or_default();
        body.push(b'{');
        body.extend_from_slice(inner);
        if !inner.iter().all(u8::is_ascii_whitespace) {
            body.push(b',');
        }
        write_meta(&mut body, &decision_id, &m);
        Ok(Some(Decision {
            body,
            allow,
            decision_id,
            cache_hit: m.cache_hit,
            fast_path: m.fast_path,
            fault: None,
        }))
    }
}

/// The decision's `allow`, checking that the decision is an object with a boolean `allow` and
/// none of the keys ACGS adds. OPA writes objects compactly with sorted keys, so `allow` usually
/// leads and a byte check suffices; anything else is parsed.
fn decision_allow(value: &[u8]) -> std::result::Result<bool, String> {
    const QUOTED: [&str; 5] = [
        "\"decision_id\":",
        "\"bundle_digest\":",
        "\"cache_hit\":",
        "\"fast_path\":",
        "\"evaluation_time_ms\":",
    ];
    let has_meta = |v: &[u8]| {
        QUOTED
            .iter()
            .any(|k| memchr::memmem::find(v, k.as_bytes()).is_some())
    };
    let quick = if value.starts_with(br#"{"allow":true,"#) {
        Some(true)
    } else if value.starts_with(br#"{"allow":false,"#) {
        Some(false)
    } else {
        None
    };
    if let Some(a) = quick {
        if !has_meta(value) {
            return Ok(a);
        }
    }
    match Json::parse(value) {
        Ok(d) => match d.get("allow") {
            Some(Json::Bool(a)) if !META_KEYS.iter().any(|k| d.get(k).is_some()) => Ok(*a),
            _ => Err("the policy's decision is not an object with a boolean allow".into()),
        },
        Err(e) => Err(format!("the policy's decision is not JSON: {e}")),
    }
}

struct Meta<'a> {
    digest: &'a str,
    cache_hit: bool,
    fast_path: bool,
    start: Instant,
}

fn write_meta(body: &mut Vec<u8>, decision_id: &str, m: &Meta<'_>) {
    let ms = m.start.elapsed().as_secs_f64() * 1000.0;
    // Writing into a Vec cannot fail.
    let _ = write!(
        body,
        r#""decision_id":"{decision_id}","bundle_digest":"{}","cache_hit":{},"fast_path":{},"evaluation_time_ms":{ms:.4}}}"#,
        m.digest, m.cache_hit, m.fast_path
    );
}

/// The fail-closed answer: deny, score 0, the fault as the reason.
fn deny(hash: Option<&str>, fault: &Error, m: Meta<'_>) -> Decision {
    let message = fault.to_string();
    let doc = serde_json::json!({
        "allow": false,
        "compliance_score": 0.0,
        "constitutional_hash": hash,
        "reasons": [format!("denied because the decision could not be made: {message}")],
        "conditions": [],
        "evaluation_details": {},
        "error": {"code": fault.code(), "message": message},
    });
    let decision_id = new_decision_id();
    let mut body = serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec());
    body.pop(); // reopen the object
    body.push(b',');
    write_meta(&mut body, &decision_id, &m);
    Decision {
        body,
        allow: false,
        decision_id,
        cache_hit: false,
        fast_path: false,
        fault: Some((fault.code(), message)),
    }
}

thread_local! {
    /// xorshift128+ state and the process it was seeded in (a forked child reseeds, so two
    /// processes never share a stream).
    static RNG: Cell<(u64, u64, u32)> = const { Cell::new((0, 0, 0)) };
}

fn random_u64() -> u64 {
    RNG.with(|cell| {
        let (mut s0, mut s1, pid) = cell.get();
        let me = std::process::id();
        if pid != me || (s0 | s1) == 0 {
            let mut seed = [0u8; 16];
            if getrandom::getrandom(&mut seed).is_err() {
                // No OS randomness: time and address still make streams distinct.
                let t = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                seed = (t ^ ((&seed as *const _ as usize as u128) << 64)).to_le_bytes();
            }
            let (a, b) = seed.split_at(8);
            s0 = u64::from_le_bytes(a.try_into().unwrap_or([1; 8]));
            s1 = u64::from_le_bytes(b.try_into().unwrap_or([2; 8])) | 1;
        }
        let mut x = s0;
        let y = s1;
        s0 = y;
        x ^= x << 23;
        s1 = x ^ y ^ (x >> 17) ^ (y >> 26);
        cell.set((s0, s1, me));
        s1.wrapping_add(y)
    })
}

/// A UUIDv7: milliseconds since the epoch, then random bits, so ids sort by time.
pub fn new_decision_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let r1 = random_u64();
    let r2 = random_u64();
    let hi = (ms << 16) | 0x7000 | (r1 & 0x0fff);
    let lo = (r2 & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_ids_are_uuid_v7_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_decision_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(50) {
            assert_eq!(id.len(), 36);
            assert_eq!(id.as_bytes().get(14), Some(&b'7'));
            assert!(matches!(
                id.as_bytes().get(19),
                Some(b'8' | b'9' | b'a' | b'b')
            ));
        }
    }
}
