//! The hash chain over audit events.
//!
//! - `content_hash = SHA-256(canonical event bytes)`
//! - `chain_hash = SHA-256(previous chain_hash (32 bytes) || content_hash (32 bytes))`
//! - The chain hash before the first event (genesis) is 32 zero bytes.
//!
//! Verification recomputes both hashes from every stored payload and never trusts a stored
//! hash: a store that lost, reordered or rewrote a row is caught at the first such row.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jcs;
use crate::Hash;

/// The chain hash that precedes the first event.
pub const GENESIS: Hash = [0u8; 32];

/// `SHA-256(canonical)`. The caller vouches that `canonical` is canonical; see [`event_hashes`].
pub fn content_hash(canonical: &[u8]) -> Hash {
    Sha256::digest(canonical).into()
}

/// `SHA-256(prev_chain || content_hash)`.
pub fn chain_hash(prev_chain: &Hash, content_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev_chain);
    h.update(content_hash);
    h.finalize().into()
}

/// The content and chain hashes of an event, after checking that `canonical` is in RFC 8785
/// form (so that verification will later accept it).
pub fn event_hashes(prev_chain: &Hash, canonical: &[u8]) -> Result<(Hash, Hash)> {
    jcs::check_canonical(canonical)?;
    let content = content_hash(canonical);
    Ok((content, chain_hash(prev_chain, &content)))
}

/// A 32-byte hash from a slice, or `InvalidHash`.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash> {
    Hash::try_from(bytes).map_err(|_| Error::InvalidHash(bytes.len()))
}

/// One stored event as read back from a store.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    /// The index the store holds for the event, when it keeps one; checked for gaps.
    pub index: Option<u64>,
    pub payload: &'a [u8],
    pub content_hash: &'a [u8],
    pub chain_hash: &'a [u8],
}

/// Why an event failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The payload is not JSON at all.
    NotJson(Error),
    /// The payload is JSON but not in canonical form (or has no canonical form).
    NotCanonical(Error),
    /// `SHA-256(payload)` differs from the stored content hash.
    ContentMismatch,
    /// `SHA-256(prev_chain || content_hash)` differs from the stored chain hash.
    ChainMismatch,
    /// The stored index is not the next one.
    IndexGap { expected: u64, found: u64 },
    /// A stored hash is not 32 bytes long.
    MalformedHash,
}

impl Fault {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::NotJson(_) => "not_json",
            Fault::NotCanonical(_) => "not_canonical",
            Fault::ContentMismatch => "content_mismatch",
            Fault::ChainMismatch => "chain_mismatch",
            Fault::IndexGap { .. } => "index_gap",
            Fault::MalformedHash => "malformed_hash",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::NotJson(e) => write!(f, "payload is not JSON: {e}"),
            Fault::NotCanonical(e) => write!(f, "payload is not canonical JSON: {e}"),
            Fault::ContentMismatch => {
                f.write_str("payload does not hash to the stored content hash")
            }
            Fault::ChainMismatch => {
                f.write_str("stored chain hash does not follow from the previous event")
            }
            Fault::IndexGap { expected, found } => {
                write!(f, "expected event index {expected}, found {found}")
            }
            Fault::MalformedHash => f.write_str("a stored hash is not 32 bytes"),
        }
    }
}

/// The first event that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEvent {
    pub index: u64,
    pub fault: Fault,
}

/// The outcome of verifying a range of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events that verified, from the start of the range up to the first bad one.
    pub checked: u64,
    pub first_bad: Option<BadEvent>,
    /// The chain hash after the last event that verified (the starting hash if none did).
    pub last_chain_hash: Hash,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Verifies events one at a time, so a caller can feed a long log in pieces.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_index: u64,
    chain: Hash,
    checked: u64,
}

impl ChainVerifier {
    /// Starts after the event with chain hash `prev_chain`; the next event is `first_index`.
    pub fn new(prev_chain: Hash, first_index: u64) -> Self {
        Self {
            next_index: first_index,
            chain: prev_chain,
            checked: 0,
        }
    }

    /// The index the next event must have.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The chain hash after the last event that verified.
    pub fn chain_hash(&self) -> &Hash {
        &self.chain
    }

    /// Re-canonicalises and re-hashes one event. On failure the state stays where it was.
    pub fn check(&mut self, event: &StoredEvent<'_>) -> Result<(), BadEvent> {
        let index = self.next_index;
        let bad = |fault| BadEvent { index, fault };
        if let Some(found) = event.index {
            if found != index {
                return Err(bad(Fault::IndexGap {
                    expected: index,
                    found,
                }));
            }
        }
        if let Err(e) = jcs::check_canonical(event.payload) {
            return Err(bad(match e {
                Error::InvalidJson { .. } => Fault::NotJson(e),
                other => Fault::NotCanonical(other),
            }));
        }
        let (Ok(stored_content), Ok(stored_chain)) = (
            <&Hash>::try_from(event.content_hash),
            <&Hash>::try_from(event.chain_hash),
        ) else {
            return Err(bad(Fault::MalformedHash));
        };
        let content = content_hash(event.payload);
        if &content != stored_content {
            return Err(bad(Fault::ContentMismatch));
        }
        let chain = chain_hash(&self.chain, &content);
        if &chain != stored_chain {
            return Err(bad(Fault::ChainMismatch));
        }
        self.chain = chain;
        self.next_index += 1;
        self.checked += 1;
        Ok(())
    }

    /// The report so far, with `first_bad` when verification stopped on a bad event.
    pub fn report(&self, first_bad: Option<BadEvent>) -> ChainReport {
        ChainReport {
            checked: self.checked,
            first_bad,
            last_chain_hash: self.chain,
        }
    }
}

/// Verifies a contiguous range of events that follows `prev_chain`, the first being
/// `first_index`, and stops at the first bad one.
pub fn verify_range<'a, I>(prev_chain: &Hash, first_index: u64, events: I) -> ChainReport
where
    I: IntoIterator<Item = StoredEvent<'a>>,
{
    let mut verifier = ChainVerifier::new(*prev_chain, first_index);
    for event in events {
        if let Err(bad) = verifier.check(&event) {
            return verifier.report(Some(bad));
        }
    }
    verifier.report(None)
}
