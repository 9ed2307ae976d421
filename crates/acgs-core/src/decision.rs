//! `decide`: the constitution's decision pipeline for one request, as embedded callers and the
//! REST service both see it. It checks the constitutional hash, then answers from the L1 cache,
//! the fast path or a full evaluation of `acgs/main/decision`, and fails closed: any fault in
//! the policy path becomes a deny that names the fault.

use std::cell::Cell;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cache::{CacheKey, Count};
use crate::canon::Json;
use crate::engine::{result_value, Engine, Input, InputCheck, Source, DECISION_ENTRYPOINT};
use crate::error::{Error, Result};
use crate::trusted::{admit_tree, parse_facts};
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
    /// Whatever the request holds under `trusted` is dropped (see [`crate::trusted`]).
    pub fn decide(&self, request: &[u8]) -> Result<Decision> {
        self.decide_trusted(request, None)
    }

    /// [`Engine::decide`] with the service's facts: `trusted` (a JSON object) replaces the
    /// request's own `trusted` member before anything reads the request.
    pub fn decide_trusted(&self, request: &[u8], trusted: Option<&[u8]>) -> Result<Decision> {
        self.decide_inner(request, trusted, true, Count::All)?
            .ok_or_else(|| Error::Internal("decision pipeline returned nothing".into()))
    }

    /// [`Engine::decide_trusted`] after [`Engine::decide_cached_trusted`] found nothing for this
    /// request: the probe counted its L1 look-up (a miss), so this one is not counted again.
    pub fn decide_probed(&self, request: &[u8], trusted: Option<&[u8]>) -> Result<Decision> {
        self.decide_inner(request, trusted, true, Count::Nothing)?
            .ok_or_else(|| Error::Internal("decision pipeline returned nothing".into()))
    }

    /// Like [`Engine::decide`] but answers only from the L1 cache or the fast path; `None`
    /// means a full evaluation is needed (callers with a second-level cache look there first).
    pub fn decide_cached(&self, request: &[u8]) -> Result<Option<Decision>> {
        self.decide_inner(request, None, false, Count::All)
    }

    /// [`Engine::decide_cached`] with the service's facts (see [`Engine::decide_trusted`]).
    pub fn decide_cached_trusted(
        &self,
        request: &[u8],
        trusted: Option<&[u8]>,
    ) -> Result<Option<Decision>> {
        self.decide_inner(request, trusted, false, Count::All)
    }

    /// [`Engine::decide_cached_trusted`] for a request whose look-up is already counted (read
    /// again after a second-level cache refilled L1): a hit is not counted a second time.
    pub fn decide_cached_probed(
        &self,
        request: &[u8],
        trusted: Option<&[u8]>,
    ) -> Result<Option<Decision>> {
        self.decide_inner(request, trusted, false, Count::Nothing)
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

    fn decide_inner(
        &self,
        raw: &[u8],
        trusted: Option<&[u8]>,
        run: bool,
        count: Count,
    ) -> Result<Option<Decision>> {
        let start = Instant::now();
        let loaded = self.current.load();
        let hash = loaded.constitutional_hash.as_deref();
        let meta = |cache_hit: bool, fast_path: bool| Meta {
            digest: &loaded.bundle_digest,
            cache_hit,
            fast_path,
            start,
        };
        let cache = self.cache.as_ref().filter(|_| loaded.cacheable);
        // The alias key covers the request's bytes and the facts' bytes: the same bytes are
        // always admitted the same way, so a repeated request skips the parse and admission.
        let alias = match (cache, loaded.decision_entrypoint) {
            (Some(_), Some(ep)) => Some(request_key(&loaded.bundle_digest, ep, raw, trusted)),
            _ => None,
        };
        if let (Some(c), Some(k)) = (cache, alias) {
            let alias_count = if count == Count::All {
                Count::Hits
            } else {
                Count::Nothing
            };
            if let Some((entry, _)) = c.get_entry(k, alias_count) {
                // These exact bytes passed the checks below against this very bundle (the
                // key covers its digest) before the alias was stored, so they pass again; the
                // entry is the checked decision behind its allow flag.
                if let Some((&flag, value)) = entry.split_first() {
                    return Ok(Some(build(value, flag == 1, meta(true, false))));
                }
            }
        }
        let facts = trusted.map(parse_facts).transpose()?;
        // One parse: admission works on the tree every later step reads.
        let mut doc = match Json::parse(raw) {
            Ok(d @ Json::Obj(_)) => d,
            Ok(_) => {
                return Err(Error::InvalidInput(
                    "a decision request must be a JSON object".into(),
                ))
            }
            Err(e) => return Err(Error::InvalidInput(format!("decision request: {e}"))),
        };
        let changed = admit_tree(&mut doc, facts);
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
        let Some(ep) = loaded.decision_entrypoint else {
            let fault = Error::UnknownEntrypoint(DECISION_ENTRYPOINT.into());
            return Ok(Some(deny(hash, &fault, meta(false, false))));
        };
        let input = Input::Admitted {
            sent: raw,
            doc: &doc,
            changed,
        };
        let found = self.evaluate_on(
            &loaded,
            ep,
            input,
            Some(Ok(&doc)),
            InputCheck::Trusted,
            Format::Json,
            run,
            count,
        );
        let (set, source) = match found {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(None),
            Err(e @ Error::InvalidInput(_)) => return Err(e),
            Err(e) => return Ok(Some(deny(hash, &e, meta(false, false)))),
        };
        let m = meta(
            matches!(source, Source::Cache(_)),
            source == Source::FastPath,
        );
        let (value, allow) = match checked_decision(&set) {
            Ok(found) => found,
            Err(fault) => return Ok(Some(deny(hash, &fault, m))),
        };
        if let (Some(c), Some(k), Source::Cache(expires)) = (cache, alias, source) {
            // Asked for a second time: remember these bytes too, so the next time skips the
            // parse, the canonical hash and the decision check. Only repeated requests take a
            // second entry. The alias holds the allow flag, then the checked decision.
            let mut entry = Vec::with_capacity(value.len() + 1);
            entry.push(u8::from(allow));
            entry.extend_from_slice(value);
            c.put_until(k, Arc::from(entry), expires);
        }
        Ok(Some(build(value, allow, m)))
    }
}

/// The alias key of a decision request's exact bytes (see [`crate::cache::KeyInput::Request`]).
fn request_key(digest: &str, ep: i32, request: &[u8], facts: Option<&[u8]>) -> CacheKey {
    thread_local! {
        static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| {
        let mut scratch = cell.take();
        let key = CacheKey::for_request(digest, ep, 0, request, facts, &mut scratch);
        if scratch.capacity() <= 64 * 1024 {
            cell.set(scratch);
        }
        key
    })
}

/// The policy's decision in a result set and its `allow`, or the fault that makes it a deny.
fn checked_decision(set: &[u8]) -> std::result::Result<(&[u8], bool), Error> {
    let value = result_value(set)
        .ok_or_else(|| Error::Evaluation("the policy returned no decision".into()))?;
    let allow = decision_allow(value).map_err(Error::Evaluation)?;
    Ok((value, allow))
}

/// The response: the policy's decision (a checked JSON object) with ACGS's keys added.
fn build(value: &[u8], allow: bool, m: Meta<'_>) -> Decision {
    let decision_id = new_decision_id();
    let mut body = Vec::with_capacity(value.len() + 200);
    // `value` is a JSON object (checked): reopen it to append ACGS's keys.
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
    Decision {
        body,
        allow,
        decision_id,
        cache_hit: m.cache_hit,
        fast_path: m.fast_path,
        fault: None,
    }
}

/// The decision's `allow`, checking that the decision is an object with a boolean `allow` and
/// none of the keys ACGS adds. OPA writes objects compactly with sorted keys, so `allow` usually
/// leads and a byte check suffices; anything else is parsed (OPA's Wasm does not sort keys, so
/// the constitution's decisions are parsed: once per canonical entry, never on alias hits).
fn decision_allow(value: &[u8]) -> std::result::Result<bool, String> {
    static QUOTED: OnceLock<Vec<memchr::memmem::Finder<'static>>> = OnceLock::new();
    let finders = QUOTED.get_or_init(|| {
        [
            "\"decision_id\":",
            "\"bundle_digest\":",
            "\"cache_hit\":",
            "\"fast_path\":",
            "\"evaluation_time_ms\":",
        ]
        .iter()
        .map(|k| memchr::memmem::Finder::new(k.as_bytes()))
        .collect()
    });
    let has_meta = |v: &[u8]| finders.iter().any(|f| f.find(v).is_some());
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
    body.extend_from_slice(br#""decision_id":""#);
    body.extend_from_slice(decision_id.as_bytes());
    body.extend_from_slice(br#"","bundle_digest":""#);
    body.extend_from_slice(m.digest.as_bytes());
    body.extend_from_slice(br#"","cache_hit":"#);
    body.extend_from_slice(if m.cache_hit { b"true" } else { b"false" });
    body.extend_from_slice(br#","fast_path":"#);
    body.extend_from_slice(if m.fast_path { b"true" } else { b"false" });
    body.extend_from_slice(br#","evaluation_time_ms":"#);
    write_millis(body, m.start.elapsed());
    body.push(b'}');
}

/// A duration in milliseconds with four decimals (`0.0123`), written without the float
/// formatter, which costs more than a whole cache hit.
fn write_millis(body: &mut Vec<u8>, elapsed: std::time::Duration) {
    // Tenths of a microsecond, rounded half up.
    let units = (elapsed.as_nanos().saturating_add(50) / 100).min(u128::from(u64::MAX)) as u64;
    let _ = write!(body, "{}.", units / 10_000);
    let frac = units % 10_000;
    body.extend_from_slice(&[
        b'0' + (frac / 1000) as u8,
        b'0' + (frac / 100 % 10) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let r1 = random_u64();
    let r2 = random_u64();
    let hi = (ms << 16) | 0x7000 | (r1 & 0x0fff);
    let lo = (r2 & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    // 32 hex digits of hi then lo, with dashes after the 8th, 12th, 16th and 20th.
    let mut out = String::with_capacity(36);
    for i in 0..32u32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        let word = if i < 16 { hi } else { lo };
        let nibble = (word >> (60 - 4 * (i % 16))) & 0xf;
        out.push(char::from(
            HEX.get(nibble as usize).copied().unwrap_or(b'0'),
        ));
    }
    out
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
