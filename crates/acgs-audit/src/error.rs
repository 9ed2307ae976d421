//! The audit core's errors. Each variant has a stable code; the Python bindings map each to a
//! class under `acgs.errors.AuditError`.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The bytes are not JSON (RFC 8259), or not valid UTF-8, or nest too deeply.
    #[error("invalid JSON at byte {offset}: {reason}")]
    InvalidJson { offset: usize, reason: String },
    /// A host-language value JSON cannot hold (a set, bytes, a non-string key) or one nested
    /// too deeply.
    #[error("value has no JSON form: {0}")]
    InvalidValue(String),
    /// An object names the same member twice; RFC 8785 inputs must not.
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    /// A number JCS cannot carry unchanged: non-finite, beyond the double range, or an
    /// integer whose digits the IEEE-754 double would alter.
    #[error("number out of range: {0}")]
    NumberOutOfRange(String),
    /// A string holds a lone UTF-16 surrogate, which I-JSON forbids.
    #[error("invalid string: {0}")]
    InvalidString(String),
    /// Valid JSON, but not the RFC 8785 serialisation of itself.
    #[error("JSON is not in canonical form at byte {offset}: {reason}")]
    NotCanonical { offset: usize, reason: String },
    /// A hash argument is not 32 bytes.
    #[error("invalid hash: expected 32 bytes, got {0}")]
    InvalidHash(usize),
    /// Proof parameters that describe no proof (index beyond size, sizes out of order, too few
    /// leaves for the requested tree).
    #[error("invalid proof request: {0}")]
    InvalidProofRequest(String),
    /// A Merkle proof that does not verify.
    #[error("proof does not verify: {0}")]
    ProofFailed(String),
    /// A signing or verifier key string that does not parse, or whose key id does not match.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A signed note that breaks the C2SP signed-note syntax.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A note text that is not a C2SP tlog checkpoint.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// The note carries no signature by the expected key.
    #[error("note has no signature by key {0}")]
    UnknownKey(String),
    /// A signature by the expected key that does not verify.
    #[error("invalid signature by key {0}")]
    BadSignature(String),
    /// Signing would contradict a checkpoint signed before.
    #[error("inconsistent checkpoint: {0}")]
    InconsistentCheckpoint(String),
    /// The operating system could not provide randomness.
    #[error("no randomness available: {0}")]
    Randomness(String),
    /// Arguments that do not fit together (list lengths, indices).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidJson { .. } => "invalid_json",
            Error::InvalidValue(_) => "invalid_value",
            Error::DuplicateKey(_) => "duplicate_key",
            Error::NumberOutOfRange(_) => "number_out_of_range",
            Error::InvalidString(_) => "invalid_string",
            Error::NotCanonical { .. } => "not_canonical",
            Error::InvalidHash(_) => "invalid_hash",
            Error::InvalidProofRequest(_) => "invalid_proof_request",
            Error::ProofFailed(_) => "proof_failed",
            Error::InvalidKey(_) => "invalid_key",
            Error::MalformedNote(_) => "malformed_note",
            Error::MalformedCheckpoint(_) => "malformed_checkpoint",
            Error::UnknownKey(_) => "unknown_key",
            Error::BadSignature(_) => "bad_signature",
            Error::InconsistentCheckpoint(_) => "inconsistent_checkpoint",
            Error::Randomness(_) => "randomness_unavailable",
            Error::InvalidArgument(_) => "invalid_argument",
        }
    }
}
