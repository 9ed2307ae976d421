//! ACGS audit core: the formats and algorithms that make the audit log tamper-evident and
//! verifiable offline.
//!
//! - [`jcs`]: RFC 8785 canonical JSON, the byte form of an event.
//! - [`chain`]: the SHA-256 hash chain over events and its verifier.
//! - [`merkle`]: the RFC 9162 Merkle tree over content hashes, inclusion and consistency proofs.
//! - [`checkpoint`]: C2SP checkpoints signed as C2SP signed notes with Ed25519.

pub mod chain;
pub mod checkpoint;
pub mod error;
pub mod jcs;
pub mod merkle;

pub use chain::{verify_range, ChainReport, ChainVerifier, Fault, StoredEvent};
pub use checkpoint::{Checkpoint, Checkpointer, SigningKey, VerifierKey};
pub use error::{Error, Result};
pub use merkle::CompactRange;

/// A SHA-256 digest.
pub type Hash = [u8; 32];
