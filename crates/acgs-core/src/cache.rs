//! The L1 decision cache: a sharded LRU with a time-to-live, keyed by a 128-bit xxh3 hash over
//! the bundle digest, the entrypoint, the output format and the canonical input.

use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use xxhash_rust::xxh3::Xxh3;

use crate::canon::Json;

/// Shards spread lock traffic; a power of two so the shard is a mask of the key.
const SHARDS: usize = 16;

/// A cache key. Built only by [`CacheKey::new`], so every key covers everything the result
/// depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub u128);

/// What the cached result was computed from, besides the bundle.
pub enum KeyInput<'a> {
    /// A parsed JSON document (hashed canonically).
    Json(&'a Json<'a>),
    /// Bytes that are not plain JSON (Rego value text, documents with repeated keys): hashed
    /// as they are, in a domain of their own.
    Raw(&'a [u8]),
    /// No input document.
    None,
    /// The exact bytes of a decision request that `decide` has already checked (a JSON
    /// object naming this constitution's hash, or none), and of the service's facts it was
    /// admitted with: an alias of the canonical entry, so a repeated request is answered
    /// without parsing. A domain of its own, since only `decide` vouches for these bytes.
    Request(&'a [u8], Option<&'a [u8]>),
}

impl CacheKey {
    pub fn new(bundle_digest: &str, entrypoint: i32, format: u8, input: KeyInput<'_>) -> CacheKey {
        let mut h = Xxh3::new();
        h.update(&(bundle_digest.len() as u64).to_le_bytes());
        h.update(bundle_digest.as_bytes());
        h.update(&entrypoint.to_le_bytes());
        h.update(&[format]);
        match input {
            KeyInput::Json(doc) => {
                h.update(b"J");
                doc.hash_into(&mut h);
            }
            KeyInput::Raw(bytes) => {
                h.update(b"R");
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
            }
            KeyInput::None => h.update(b"-"),
            KeyInput::Request(bytes, facts) => {
                h.update(b"D");
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(bytes);
                if let Some(facts) = facts {
                    h.update(b"T");
                    h.update(&(facts.len() as u64).to_le_bytes());
                    h.update(facts);
                }
            }
        }
        CacheKey(h.digest128())
    }

    /// [`CacheKey::new`] for [`KeyInput::Request`] in one call over a contiguous buffer:
    /// the same key, without the streaming hasher's per-call set-up (the hit path's cost).
    pub fn for_request(
        bundle_digest: &str,
        entrypoint: i32,
        format: u8,
        request: &[u8],
        facts: Option<&[u8]>,
        scratch: &mut Vec<u8>,
    ) -> CacheKey {
        scratch.clear();
        scratch.extend_from_slice(&(bundle_digest.len() as u64).to_le_bytes());
        scratch.extend_from_slice(bundle_digest.as_bytes());
        scratch.extend_from_slice(&entrypoint.to_le_bytes());
        scratch.push(format);
        scratch.push(b'D');
        scratch.extend_from_slice(&(request.len() as u64).to_le_bytes());
        scratch.extend_from_slice(request);
        if let Some(facts) = facts {
            scratch.push(b'T');
            scratch.extend_from_slice(&(facts.len() as u64).to_le_bytes());
            scratch.extend_from_slice(facts);
        }
        CacheKey(xxhash_rust::xxh3::xxh3_128(scratch))
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> CacheKey {
        CacheKey(u128::from_be_bytes(b))
    }
}

/// The keys are already uniform hashes; hashing them again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

struct Entry {
    value: Arc<[u8]>,
    expires: Option<Instant>,
}

/// A cached value and when it expires.
pub(crate) type CachedEntry = (Arc<[u8]>, Option<Instant>);

type Shard = LruCache<CacheKey, Entry, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries pushed out to make room.
    pub evictions: u64,
    /// Entries found past their time-to-live (each also counted as a miss).
    pub expirations: u64,
    pub size: u64,
    pub capacity: u64,
}

/// Which outcomes of a look-up count in [`DecisionCache::stats`]: every request is counted
/// once, as a hit or a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// The request's look-up.
    All,
    /// An alias look-up that falls back to the canonical key on a miss (which counts it).
    Hits,
    /// A look-up repeated for a request already counted (by a cache-only probe before it).
    Nothing,
}

pub struct DecisionCache {
    shards: Box<[Mutex<Shard>]>,
    ttl: Option<Duration>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

impl DecisionCache {
    /// A cache of `capacity` entries in all (at least one per shard); `ttl` of `None` keeps
    /// entries until they are evicted.
    pub fn new(capacity: usize, ttl: Option<Duration>) -> DecisionCache {
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(LruCache::with_hasher(
                    per_shard,
                    BuildHasherDefault::default(),
                ))
            })
            .collect();
        DecisionCache {
            shards,
            ttl,
            capacity: per_shard.get() * SHARDS,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: CacheKey) -> Option<&Mutex<Shard>> {
        self.shards.get((key.0 >> 64) as usize % SHARDS)
    }

    pub fn get(&self, key: CacheKey) -> Option<Arc<[u8]>> {
        self.get_entry(key, Count::All).map(|(value, _)| value)
    }

    /// A live entry and its expiry, the look-up counted as `count` says.
    pub(crate) fn get_entry(&self, key: CacheKey, count: Count) -> Option<CachedEntry> {
        let found = self.shard(key).and_then(|s| {
            let mut shard = s.lock();
            match shard.get(&key) {
                Some(e) if e.expires.is_none_or(|t| Instant::now() < t) => {
                    Some((e.value.clone(), e.expires))
                }
                Some(_) => {
                    shard.pop(&key);
                    self.expirations.fetch_add(1, Ordering::Relaxed);
                    None
                }
                None => None,
            }
        });
        match (&found, count) {
            (Some(_), Count::All | Count::Hits) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            (None, Count::All) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        found
    }

    pub fn put(&self, key: CacheKey, value: Arc<[u8]>) {
        let expires = self.ttl.map(|t| Instant::now() + t);
        self.put_until(key, value, expires);
    }

    /// Stores an entry that expires at `expires` (an alias living as long as its original).
    pub(crate) fn put_until(&self, key: CacheKey, value: Arc<[u8]>, expires: Option<Instant>) {
        if let Some(s) = self.shard(key) {
            let pushed = s.lock().push(key, Entry { value, expires });
            if matches!(pushed, Some((old, _)) if old != key) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().clear();
        }
    }

    pub fn stats(&self) -> CacheStats {
        let size: usize = self.shards.iter().map(|s| s.lock().len()).sum();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expirations: self.expirations.load(Ordering::Relaxed),
            size: size as u64,
            capacity: self.capacity as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn k(i: u128) -> CacheKey {
        // Spread like real hashes so every shard is used.
        CacheKey(i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835))
    }

    fn v(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn hits_misses_and_lru_eviction() {
        let c = DecisionCache::new(SHARDS, None); // one entry per shard
        assert!(c.get(k(1)).is_none());
        c.put(k(1), v("a"));
        assert_eq!(&*c.get(k(1)).unwrap(), b"a");
        // Fill far past capacity: the size stays at capacity and evictions are counted.
        for i in 2..200 {
            c.put(k(i), v("x"));
        }
        let s = c.stats();
        assert_eq!(s.capacity, SHARDS as u64);
        assert!(s.size <= s.capacity);
        assert_eq!(s.evictions, 199 - s.size);
        assert_eq!((s.hits, s.misses), (1, 1));
        // Replacing a key is not an eviction.
        let before = c.stats().evictions;
        c.put(k(199), v("y"));
        assert_eq!(c.stats().evictions, before);
        assert_eq!(&*c.get(k(199)).unwrap(), b"y");
    }

    #[test]
    fn least_recently_used_goes_first() {
        let c = DecisionCache::new(2 * SHARDS, None);
        // Find three keys in one shard.
        let same: Vec<CacheKey> = (0..10_000u128)
            .map(k)
            .filter(|x| (x.0 >> 64) as usize % SHARDS == 0)
            .take(3)
            .collect();
        let [a, b, d] = [same[0], same[1], same[2]];
        c.put(a, v("a"));
        c.put(b, v("b"));
        c.get(a); // a is now more recent than b
        c.put(d, v("d"));
        assert!(c.get(b).is_none());
        assert!(c.get(a).is_some() && c.get(d).is_some());
    }

    #[test]
    fn entries_expire() {
        let c = DecisionCache::new(100, Some(Duration::from_millis(20)));
        c.put(k(1), v("a"));
        assert!(c.get(k(1)).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(k(1)).is_none());
        let s = c.stats();
        assert_eq!((s.expirations, s.size), (1, 0));
    }

    #[test]
    fn keys_cover_bundle_entrypoint_format_and_input() {
        let doc = Json::parse(br#"{"a":1}"#).unwrap();
        let base = CacheKey::new("d1", 0, 0, KeyInput::Json(&doc));
        assert_ne!(base, CacheKey::new("d2", 0, 0, KeyInput::Json(&doc)));
        assert_ne!(base, CacheKey::new("d1", 1, 0, KeyInput::Json(&doc)));
        assert_ne!(base, CacheKey::new("d1", 0, 1, KeyInput::Json(&doc)));
        assert_ne!(
            base,
            CacheKey::new("d1", 0, 0, KeyInput::Raw(br#"{"a":1}"#))
        );
        assert_ne!(base, CacheKey::new("d1", 0, 0, KeyInput::None));
        let same = Json::parse(br#" { "a" : 1 } "#).unwrap();
        assert_eq!(base, CacheKey::new("d1", 0, 0, KeyInput::Json(&same)));
        assert_eq!(CacheKey::from_bytes(base.to_bytes()), base);
    }

    #[test]
    fn request_aliases_have_a_domain_of_their_own() {
        let bytes = br#"{"a":1}"#;
        let alias = CacheKey::new("d1", 0, 0, KeyInput::Request(bytes, None));
        let mut scratch = Vec::new();
        assert_eq!(
            alias,
            CacheKey::for_request("d1", 0, 0, bytes, None, &mut scratch)
        );
        // With the service's facts: another key, the same in both spellings, and the split
        // between request and facts is part of it.
        let with_facts = CacheKey::for_request("d1", 0, 0, bytes, Some(b"{}"), &mut scratch);
        assert_ne!(alias, with_facts);
        assert_eq!(
            with_facts,
            CacheKey::new("d1", 0, 0, KeyInput::Request(bytes, Some(b"{}")))
        );
        assert_ne!(
            CacheKey::for_request("d1", 0, 0, b"{\"a\":1}{", Some(b"}"), &mut scratch),
            CacheKey::for_request("d1", 0, 0, b"{\"a\":1}", Some(b"{}"), &mut scratch)
        );
        let doc = Json::parse(bytes).unwrap();
        assert_ne!(alias, CacheKey::new("d1", 0, 0, KeyInput::Json(&doc)));
        assert_ne!(alias, CacheKey::new("d1", 0, 0, KeyInput::Raw(bytes)));
        assert_ne!(
            alias,
            CacheKey::for_request("d2", 0, 0, bytes, None, &mut scratch)
        );
        assert_ne!(
            alias,
            CacheKey::for_request("d1", 0, 0, br#"{"a": 1}"#, None, &mut scratch)
        );
    }

    #[test]
    fn alias_lookups_count_hits_but_not_misses() {
        let c = DecisionCache::new(100, Some(Duration::from_secs(60)));
        assert!(c.get_entry(k(1), Count::Hits).is_none());
        assert_eq!((c.stats().hits, c.stats().misses), (0, 0));
        c.put(k(1), v("a"));
        let (_, expires) = c.get_entry(k(1), Count::Hits).unwrap();
        c.put_until(k(2), v("a"), expires);
        assert_eq!(c.get_entry(k(2), Count::All).unwrap().1, expires);
        assert_eq!((c.stats().hits, c.stats().misses), (2, 0));
    }

    #[test]
    fn repeated_lookups_count_nothing() {
        let c = DecisionCache::new(100, None);
        assert!(c.get_entry(k(1), Count::Nothing).is_none());
        c.put(k(1), v("a"));
        assert!(c.get_entry(k(1), Count::Nothing).is_some());
        assert_eq!((c.stats().hits, c.stats().misses), (0, 0));
        assert!(c.get_entry(k(2), Count::All).is_none());
        assert_eq!((c.stats().hits, c.stats().misses), (0, 1));
    }
}
